package demo

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// The demo PBX only speaks G.711 plus RFC 4733 DTMF; anything else in an
// offer is declined.
const (
	ptPCMU          = "0"
	ptPCMA          = "8"
	ptTelephoneEvt  = "101"
	maxSDPLines     = 512 // a demo offer is a few dozen lines; cap parsing work
	directionSR     = "sendrecv"
	directionSend   = "sendonly"
	directionRecv   = "recvonly"
	directionNone   = "inactive"
	sdpSessionName  = "sipwall demo"
	sdpOriginUser   = "sipwall-demo"
	sdpProtoRTPAVP  = "RTP/AVP"
	sdpProtoRTPAVPF = "RTP/AVPF"
)

var errNoCommonCodec = errors.New("offer has no audio stream with PCMU or PCMA")

// mline is one m= section of an offer, kept so the answer can carry the
// same number of m= lines in the same order (RFC 3264 section 6).
type mline struct {
	media   string
	port    int
	proto   string
	formats []string
	dir     string // media-level direction attribute, "" when absent
	telEvt  string // payload type the offer maps to telephone-event/8000
}

// sdpOffer is the part of an offer the PBX needs to build its answer.
type sdpOffer struct {
	sessionDir string
	media      []mline
}

// parseSDP reads the m=, a=rtpmap and direction lines of an SDP body. It is
// deliberately small: the PBX answers whatever it understands and rejects
// the other streams with port 0.
func parseSDP(body []byte) (sdpOffer, error) {
	var off sdpOffer
	lines := strings.Split(string(body), "\n")
	if len(lines) > maxSDPLines {
		return off, fmt.Errorf("sdp has %d lines, more than %d", len(lines), maxSDPLines)
	}
	if len(lines) == 0 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "v=") {
		return off, errors.New("sdp does not start with v=")
	}
	for _, raw := range lines {
		line := strings.TrimRight(raw, "\r")
		switch {
		case strings.HasPrefix(line, "m="):
			fields := strings.Fields(line[2:])
			if len(fields) < 4 {
				return off, fmt.Errorf("bad m= line %q", line)
			}
			// "port/count" is legal; only the port matters here.
			portStr, _, _ := strings.Cut(fields[1], "/")
			port, err := strconv.Atoi(portStr)
			if err != nil || port < 0 || port > 65535 {
				return off, fmt.Errorf("bad port in m= line %q", line)
			}
			off.media = append(off.media, mline{
				media:   fields[0],
				port:    port,
				proto:   fields[2],
				formats: fields[3:],
			})
		case strings.HasPrefix(line, "a="):
			attr := line[2:]
			var cur *mline
			if n := len(off.media); n > 0 {
				cur = &off.media[n-1]
			}
			switch attr {
			case directionSR, directionSend, directionRecv, directionNone:
				if cur != nil {
					cur.dir = attr
				} else {
					off.sessionDir = attr
				}
				continue
			}
			if rest, ok := strings.CutPrefix(attr, "rtpmap:"); ok && cur != nil {
				pt, enc, _ := strings.Cut(rest, " ")
				if strings.EqualFold(strings.TrimSpace(enc), "telephone-event/8000") {
					cur.telEvt = pt
				}
			}
		}
	}
	return off, nil
}

// audio picks the first audio stream the PBX can take: RTP/AVP(F), a
// non-zero port and PCMU or PCMA on offer.
func (o sdpOffer) audio() (int, error) {
	for i, m := range o.media {
		if m.media != "audio" || m.port == 0 {
			continue
		}
		if m.proto != sdpProtoRTPAVP && m.proto != sdpProtoRTPAVPF {
			continue
		}
		if slices.Contains(m.formats, ptPCMU) || slices.Contains(m.formats, ptPCMA) {
			return i, nil
		}
	}
	return -1, errNoCommonCodec
}

// answerDirection mirrors the offerer's direction so that hold (sendonly or
// inactive) is acknowledged the way RFC 3264 section 6.1 asks.
func answerDirection(offered string) string {
	switch offered {
	case directionSend:
		return directionRecv
	case directionRecv:
		return directionSend
	case directionNone:
		return directionNone
	default:
		return directionSR
	}
}

// sdpParams carries what is specific to one answer or offer.
type sdpParams struct {
	ip      netip.Addr
	port    int
	session uint64
	version uint64
}

// buildAnswer writes an answer to off. The chosen audio stream gets the
// echo socket's port and the intersection of codecs; every other stream is
// declined with port 0.
func buildAnswer(off sdpOffer, p sdpParams) ([]byte, error) {
	idx, err := off.audio()
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	writeSessionHeader(&b, p)
	for i, m := range off.media {
		if i != idx {
			// RFC 3264 section 6: a declined stream keeps its formats and gets port 0.
			fmt.Fprintf(&b, "m=%s 0 %s %s\r\n", m.media, m.proto, strings.Join(m.formats, " "))
			continue
		}
		var formats []string
		for _, f := range m.formats {
			if f == ptPCMU || f == ptPCMA || (f == m.telEvt && m.telEvt != "") {
				formats = append(formats, f)
			}
		}
		dir := m.dir
		if dir == "" {
			dir = off.sessionDir
		}
		writeAudio(&b, p.port, m.proto, formats, m.telEvt, answerDirection(dir))
	}
	return []byte(b.String()), nil
}

// buildOffer is used when an INVITE came without SDP: the PBX then offers in
// its 200 OK and takes the answer from the ACK.
func buildOffer(p sdpParams) []byte {
	var b strings.Builder
	writeSessionHeader(&b, p)
	writeAudio(&b, p.port, sdpProtoRTPAVP, []string{ptPCMU, ptPCMA, ptTelephoneEvt}, ptTelephoneEvt, directionSR)
	return []byte(b.String())
}

func writeSessionHeader(b *strings.Builder, p sdpParams) {
	family := "IP4"
	if p.ip.Is6() {
		family = "IP6"
	}
	fmt.Fprintf(b, "v=0\r\no=%s %d %d IN %s %s\r\ns=%s\r\nc=IN %s %s\r\nt=0 0\r\n",
		sdpOriginUser, p.session, p.version, family, p.ip, sdpSessionName, family, p.ip)
}

func writeAudio(b *strings.Builder, port int, proto string, formats []string, telEvt, dir string) {
	fmt.Fprintf(b, "m=audio %d %s %s\r\n", port, proto, strings.Join(formats, " "))
	for _, f := range formats {
		switch {
		case f == ptPCMU:
			b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
		case f == ptPCMA:
			b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
		case f == telEvt:
			fmt.Fprintf(b, "a=rtpmap:%s telephone-event/8000\r\na=fmtp:%s 0-16\r\n", f, f)
		}
	}
	b.WriteString("a=ptime:20\r\n")
	fmt.Fprintf(b, "a=%s\r\n", dir)
}
