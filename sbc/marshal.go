package sbc

import (
	"bytes"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// Messages are written into pooled buffers and copied out at their exact
// size: sipgo's String builds each message in a strings.Builder that grows
// several times (a tenth of the bytes a call allocated, profiled at 400
// calls/s), and the wire form is kept for retransmissions anyway.
var msgBufs = sync.Pool{New: func() any {
	b := new(bytes.Buffer)
	b.Grow(2048)
	return b
}}

// maxPooledBuf keeps an occasional huge message's buffer out of the pool.
const maxPooledBuf = 64 << 10

// Marshal returns msg as it goes on the wire, in a slice of its own.
func Marshal(msg sip.Message) []byte {
	b := msgBufs.Get().(*bytes.Buffer)
	b.Reset()
	msg.StringWrite(b)
	out := bytes.Clone(b.Bytes())
	putBuf(b)
	return out
}

// wireLen is the size of msg on the wire.
func wireLen(msg sip.Message) int {
	b := msgBufs.Get().(*bytes.Buffer)
	b.Reset()
	msg.StringWrite(b)
	n := b.Len()
	putBuf(b)
	return n
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuf {
		msgBufs.Put(b)
	}
}
