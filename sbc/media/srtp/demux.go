package srtp

// Kind is what a datagram on a port shared by ICE, DTLS and SRTP is, by its
// first byte (RFC 7983 section 7).
type Kind int

const (
	KindOther Kind = iota // ZRTP, TURN channels, QUIC, empty or unassigned: dropped
	KindSTUN              // 0..3
	KindDTLS              // 20..63
	KindRTP               // 128..191: RTP and RTCP (told apart as RFC 5761 says)
)

// Classify sorts a datagram by its first byte; it reads nothing else, the
// parsers behind it check the rest.
func Classify(pkt []byte) Kind {
	if len(pkt) == 0 {
		return KindOther
	}
	switch b := pkt[0]; {
	case b <= 3:
		return KindSTUN
	case b >= 20 && b <= 63:
		return KindDTLS
	case b >= 128 && b <= 191:
		return KindRTP
	}
	return KindOther
}

func (k Kind) String() string {
	switch k {
	case KindSTUN:
		return "stun"
	case KindDTLS:
		return "dtls"
	case KindRTP:
		return "rtp"
	}
	return "other"
}
