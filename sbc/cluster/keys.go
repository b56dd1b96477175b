package cluster

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// keyspace builds every key and channel name; nothing else in the package
// spells one out. The prefix holds only [A-Za-z0-9_.-] (see Config), so the
// SCAN patterns below need no escaping.
type keyspace struct{ p string }

const (
	segBan   = ":ban:"
	segReg   = ":reg:"
	segLock  = ":lock:"
	segCnt   = ":cnt:"
	segGauge = ":gauge:"
	segBlock = ":block:"
	segCC    = ":cc:"
)

// ban is "<p>:ban:<prefix>", the prefix masked and in CIDR form.
func (k keyspace) ban(p netip.Prefix) string { return k.p + segBan + p.Masked().String() }
func (k keyspace) banMatch() string          { return k.p + segBan + "*" }

// banPrefix parses the prefix back out of a ban key.
func (k keyspace) banPrefix(key string) (netip.Prefix, bool) {
	s, ok := strings.CutPrefix(key, k.p+segBan)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// banChannel is the pub/sub channel of ban events.
func (k keyspace) banChannel() string { return k.p + ":bans" }

func (k keyspace) reg(aor string) string { return k.p + segReg + aor }
func (k keyspace) regMatch() string      { return k.p + segReg + "*" }
func (k keyspace) regAOR(key string) (string, bool) {
	return strings.CutPrefix(key, k.p+segReg)
}

// authKeys is the hash of digest nonce keys, field = key ID.
func (k keyspace) authKeys() string { return k.p + ":auth-keys" }

func (k keyspace) lock(name string) string { return k.p + segLock + name }

// counter is "<p>:cnt:{<key>}:<window start, unix ns>". The braces make
// every window of one counter a hash tag, so a call touches one slot on
// Redis Cluster.
func (k keyspace) counter(key string, start time.Time) string {
	return k.p + segCnt + "{" + key + "}:" + strconv.FormatInt(start.UnixNano(), 10)
}

func (k keyspace) gauge(key string) string { return k.p + segGauge + key }

func (k keyspace) block(user string) string { return k.p + segBlock + user }
func (k keyspace) blockMatch() string       { return k.p + segBlock + "*" }
func (k keyspace) blockUser(key string) (string, bool) {
	return strings.CutPrefix(key, k.p+segBlock)
}

// countries is the set of country codes a user has called.
func (k keyspace) countries(user string) string { return k.p + segCC + user }
