package media

import (
	"testing"
	"time"
)

// TestHotPathNoAlloc checks that relaying a packet allocates nothing.
// AllocsPerRun counts the mallocs of every goroutine, the relay's
// included, while one packet crosses and comes back.
func TestHotPathNoAlloc(t *testing.T) {
	m := newTestManager(t, nil)
	hotPathNoAlloc(t, setupCall(t, m, "k"))
}

// TestHotPathNoAllocReused: the same through a reused (warm) pair.
func TestHotPathNoAllocReused(t *testing.T) {
	m := newTestManager(t, withPairs(t, 1))
	setupCall(t, m, "before")
	m.Release("before")
	c := setupCall(t, m, "k")
	if st := m.Stats(); canDrain && st.Reused != 2 {
		t.Fatalf("pairs not reused: %+v", st)
	}
	hotPathNoAlloc(t, c)
}

func hotPathNoAlloc(t *testing.T, c *call) {
	t.Helper()
	pkt := rtpPacket(1, 172)
	buf := make([]byte, 2048)
	c.phone.conn.SetReadDeadline(time.Now().Add(10 * waitFor))
	c.pbx.conn.SetReadDeadline(time.Now().Add(10 * waitFor))
	roundTrip := func() {
		if _, err := c.phone.conn.WriteToUDPAddrPort(pkt, c.toExt); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.pbx.conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := c.pbx.conn.WriteToUDPAddrPort(pkt, c.toInt); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.phone.conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // latch both sides (one allocation each, once)
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Fatalf("%.2f allocations per round trip, want 0", n)
	}
}
