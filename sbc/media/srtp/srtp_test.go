package srtp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsrtp "github.com/pion/srtp/v3"
)

// The suites as a peer would configure pion from an a=crypto line, written
// out here rather than taken from the package.
var testSuites = []struct {
	name    string
	profile pionsrtp.ProtectionProfile
	keyLen  int // master key; the salt is the rest
	saltLen int
}{
	{AES_CM_128_HMAC_SHA1_80, pionsrtp.ProtectionProfileAes128CmHmacSha1_80, 16, 14},
	{AES_CM_128_HMAC_SHA1_32, pionsrtp.ProtectionProfileAes128CmHmacSha1_32, 16, 14},
	{AEAD_AES_128_GCM, pionsrtp.ProtectionProfileAeadAes128Gcm, 16, 12},
}

// rtpPacket is a 172-byte PCMU packet (12 header + 160 payload).
func rtpPacket(t testing.TB, ssrc uint32, seq uint16) []byte {
	t.Helper()
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = byte(int(seq) + i)
	}
	p := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc},
		Payload: payload,
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rtcpPacket is a compound SR + SDES.
func rtcpPacket(t testing.TB, ssrc uint32, n uint32) []byte {
	t.Helper()
	b, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: ssrc, NTPTime: uint64(n) << 32, RTPTime: n * 160, PacketCount: n, OctetCount: n * 160},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{
			Source: ssrc, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "peer"}},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// peerContexts are the peer's pion contexts: it encrypts with its own key
// (our remote) and decrypts with ours (our local).
func peerContexts(t testing.TB, profile pionsrtp.ProtectionProfile, keyLen int, own, other Crypto) (enc, dec *pionsrtp.Context) {
	t.Helper()
	enc, err := pionsrtp.CreateContext(own.Key[:keyLen], own.Key[keyLen:], profile)
	if err != nil {
		t.Fatal(err)
	}
	dec, err = pionsrtp.CreateContext(other.Key[:keyLen], other.Key[keyLen:], profile,
		pionsrtp.SRTPReplayProtection(64), pionsrtp.SRTCPReplayProtection(64))
	if err != nil {
		t.Fatal(err)
	}
	return enc, dec
}

func TestSDESInterop(t *testing.T) {
	for _, tc := range testSuites {
		t.Run(tc.name, func(t *testing.T) {
			local, err := NewCrypto(1, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if len(local.Key) != tc.keyLen+tc.saltLen {
				t.Fatalf("key of %d bytes, want %d", len(local.Key), tc.keyLen+tc.saltLen)
			}
			// The peer's a=crypto goes through the parser, as in a call.
			remote, err := ParseCrypto(mustCrypto(t, 1, tc.name).String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := SessionFromSDES(local, remote)
			if err != nil {
				t.Fatal(err)
			}
			if s.Suite() != tc.name {
				t.Errorf("Suite() = %q", s.Suite())
			}
			peerEnc, peerDec := peerContexts(t, tc.profile, tc.keyLen, remote, local)
			scratch := make([]byte, 0, 3000)

			// Across a sequence number wrap, so that both sides' rollover
			// counters have to agree.
			for seq := uint16(65530); seq != 6; seq++ {
				plain := rtpPacket(t, 0x1234, seq)
				enc, err := peerEnc.EncryptRTP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.DecryptRTP(scratch, enc)
				if err != nil {
					t.Fatalf("seq %d: decrypt: %v", seq, err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("seq %d: decrypted differs", seq)
				}
				if &got[0] != &scratch[:1][0] {
					t.Fatalf("seq %d: dst not reused", seq)
				}

				mine := rtpPacket(t, 0x5678, seq)
				out, err := s.EncryptRTP(scratch, mine)
				if err != nil {
					t.Fatal(err)
				}
				back, err := peerDec.DecryptRTP(nil, out, nil)
				if err != nil {
					t.Fatalf("seq %d: peer decrypt: %v", seq, err)
				}
				if !bytes.Equal(back, mine) {
					t.Fatalf("seq %d: peer decrypted differs", seq)
				}
			}

			for n := uint32(1); n <= 3; n++ {
				plain := rtcpPacket(t, 0x1234, n)
				enc, err := peerEnc.EncryptRTCP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.DecryptRTCP(scratch, enc)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("rtcp %d: decrypt: %v, equal %v", n, err, bytes.Equal(got, plain))
				}
				mine := rtcpPacket(t, 0x5678, n)
				out, err := s.EncryptRTCP(scratch, mine)
				if err != nil {
					t.Fatal(err)
				}
				back, err := peerDec.DecryptRTCP(nil, out, nil)
				if err != nil || !bytes.Equal(back, mine) {
					t.Fatalf("rtcp %d: peer decrypt: %v", n, err)
				}
			}
		})
	}
}

func TestSDESReplayAndTamper(t *testing.T) {
	for _, tc := range testSuites {
		t.Run(tc.name, func(t *testing.T) {
			local, remote := mustCrypto(t, 1, tc.name), mustCrypto(t, 1, tc.name)
			s, err := SessionFromSDES(local, remote)
			if err != nil {
				t.Fatal(err)
			}
			peerEnc, _ := peerContexts(t, tc.profile, tc.keyLen, remote, local)

			enc, _ := peerEnc.EncryptRTP(nil, rtpPacket(t, 7, 100), nil)
			if _, err := s.DecryptRTP(nil, enc); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DecryptRTP(nil, enc); !errors.Is(err, ErrReplay) {
				t.Fatalf("replayed RTP: %v, want ErrReplay", err)
			}

			enc, _ = peerEnc.EncryptRTP(nil, rtpPacket(t, 7, 101), nil)
			bad := bytes.Clone(enc)
			bad[20] ^= 1
			if _, err := s.DecryptRTP(nil, bad); !errors.Is(err, ErrAuth) || errors.Is(err, ErrReplay) {
				t.Fatalf("tampered RTP: %v, want ErrAuth", err)
			}
			// A refused forgery leaves the genuine packet acceptable.
			if _, err := s.DecryptRTP(nil, enc); err != nil {
				t.Fatalf("genuine RTP after a forgery: %v", err)
			}
			// Far behind the window is a replay too.
			old, _ := peerEnc.EncryptRTP(nil, rtpPacket(t, 7, 102), nil)
			for seq := uint16(103); seq < 103+ReplayWindow+1; seq++ {
				p, _ := peerEnc.EncryptRTP(nil, rtpPacket(t, 7, seq), nil)
				if _, err := s.DecryptRTP(nil, p); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.DecryptRTP(nil, old); !errors.Is(err, ErrReplay) {
				t.Fatalf("packet older than the window: %v, want ErrReplay", err)
			}

			encR, _ := peerEnc.EncryptRTCP(nil, rtcpPacket(t, 7, 1), nil)
			if _, err := s.DecryptRTCP(nil, encR); err != nil {
				t.Fatal(err)
			}
			if _, err := s.DecryptRTCP(nil, encR); !errors.Is(err, ErrReplay) {
				t.Fatalf("replayed RTCP: %v, want ErrReplay", err)
			}
			encR, _ = peerEnc.EncryptRTCP(nil, rtcpPacket(t, 7, 2), nil)
			encR[10] ^= 0x80
			if _, err := s.DecryptRTCP(nil, encR); !errors.Is(err, ErrAuth) {
				t.Fatalf("tampered RTCP: %v, want ErrAuth", err)
			}

			for _, short := range [][]byte{nil, {0x80}, enc[:11]} {
				if _, err := s.DecryptRTP(nil, short); !errors.Is(err, ErrMalformed) {
					t.Errorf("%d-byte RTP: %v, want ErrMalformed", len(short), err)
				}
				if _, err := s.EncryptRTP(nil, short); !errors.Is(err, ErrMalformed) {
					t.Errorf("%d-byte RTP to encrypt: %v, want ErrMalformed", len(short), err)
				}
			}
			if _, err := s.DecryptRTP(nil, enc[:14]); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrAuth) {
				t.Errorf("truncated SRTP: %v", err)
			}
			if _, err := s.DecryptRTCP(nil, encR[:7]); !errors.Is(err, ErrMalformed) {
				t.Errorf("7-byte RTCP: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestSDESInPlace(t *testing.T) {
	local, remote := mustCrypto(t, 1, AES_CM_128_HMAC_SHA1_80), mustCrypto(t, 1, AES_CM_128_HMAC_SHA1_80)
	s, _ := SessionFromSDES(local, remote)
	back, _ := SessionFromSDES(remote, local)
	plain := rtpPacket(t, 9, 1)
	buf := make([]byte, len(plain), 1500)
	copy(buf, plain)
	out, err := s.EncryptRTP(buf, buf)
	if err != nil {
		t.Fatal(err)
	}
	out, err = back.DecryptRTP(out, out)
	if err != nil || !bytes.Equal(out, plain) {
		t.Fatalf("in place: %v", err)
	}
}

func TestSSRCLimit(t *testing.T) {
	local, remote := mustCrypto(t, 1, AEAD_AES_128_GCM), mustCrypto(t, 1, AEAD_AES_128_GCM)
	s, _ := SessionFromSDES(local, remote)
	peer, _ := SessionFromSDES(remote, local)
	for ssrc := uint32(1); ssrc <= MaxSSRCs; ssrc++ {
		if _, err := s.EncryptRTP(nil, rtpPacket(t, ssrc, 1)); err != nil {
			t.Fatal(err)
		}
		p, _ := peer.EncryptRTP(nil, rtpPacket(t, ssrc, 1))
		if _, err := s.DecryptRTP(nil, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.EncryptRTP(nil, rtpPacket(t, MaxSSRCs+1, 1)); !errors.Is(err, ErrTooManySSRCs) {
		t.Errorf("encrypt from one SSRC too many: %v", err)
	}
	peer2, _ := SessionFromSDES(remote, local) // peer is at its own limit
	p, _ := peer2.EncryptRTP(nil, rtpPacket(t, MaxSSRCs+1, 1))
	if _, err := s.DecryptRTP(nil, p); !errors.Is(err, ErrTooManySSRCs) {
		t.Errorf("decrypt from one SSRC too many: %v", err)
	}
	if _, err := s.EncryptRTP(nil, rtpPacket(t, 1, 2)); err != nil {
		t.Errorf("known SSRC refused: %v", err)
	}
	// Forgeries from new SSRCs use up nothing.
	s2, _ := SessionFromSDES(local, remote)
	for ssrc := uint32(1); ssrc <= 2*MaxSSRCs; ssrc++ {
		forged := rtpPacket(t, ssrc, 1)
		forged = append(forged, make([]byte, 16)...)
		if _, err := s2.DecryptRTP(nil, forged); !errors.Is(err, ErrAuth) {
			t.Fatalf("forgery %d: %v, want ErrAuth", ssrc, err)
		}
	}
}

func TestSessionConcurrent(t *testing.T) {
	local, remote := mustCrypto(t, 1, AES_CM_128_HMAC_SHA1_80), mustCrypto(t, 1, AES_CM_128_HMAC_SHA1_80)
	s, _ := SessionFromSDES(local, remote)
	peer, _ := SessionFromSDES(remote, local)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			buf := make([]byte, 0, 3000)
			for i := range 200 {
				ssrc := uint32(g + 1)
				enc, err := peer.EncryptRTP(nil, rtpPacket(t, ssrc, uint16(i)))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := s.DecryptRTP(buf, enc); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.EncryptRTCP(buf, rtcpPacket(t, ssrc, uint32(i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestSessionFromSDESErrors(t *testing.T) {
	a := mustCrypto(t, 1, AES_CM_128_HMAC_SHA1_80)
	g := mustCrypto(t, 1, AEAD_AES_128_GCM)
	if _, err := SessionFromSDES(a, g); !errors.Is(err, ErrUnsupported) {
		t.Errorf("two suites: %v", err)
	}
	if _, err := SessionFromSDES(Crypto{Tag: 1, Suite: "F8_128_HMAC_SHA1_80", Key: a.Key}, Crypto{Tag: 1, Suite: "F8_128_HMAC_SHA1_80", Key: a.Key}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unknown suite: %v", err)
	}
	short := Crypto{Tag: 1, Suite: AES_CM_128_HMAC_SHA1_80, Key: a.Key[:29]}
	if _, err := SessionFromSDES(a, short); !errors.Is(err, ErrMalformed) {
		t.Errorf("short key: %v", err)
	}
}

func mustCrypto(t testing.TB, tag int, suite string) Crypto {
	t.Helper()
	c, err := NewCrypto(tag, suite)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const (
	rfcKey  = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR" // RFC 4568 section 4
	rfcKey2 = "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj" // section 5.1, the answer
	gcmKey  = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==" // 28 bytes
	key46   = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLQ=="
)

func TestParseCrypto(t *testing.T) {
	rfc, _ := base64.StdEncoding.DecodeString(rfcKey)
	gcm, _ := base64.StdEncoding.DecodeString(gcmKey)
	tests := []struct {
		name  string
		value string
		want  Crypto
		err   error
	}{
		// RFC 4568's own examples carry an MKI, which we refuse.
		{"rfc 4568 section 4", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|1:4", Crypto{}, ErrUnsupported},
		{"rfc 4568 section 5.1 answer", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey2 + "|2^20|1:32", Crypto{}, ErrUnsupported},
		{"rfc 4568 brief", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|1:32", Crypto{}, ErrUnsupported},
		{"rfc 4568 section 9.2 several keys", "2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP", Crypto{}, ErrMalformed},
		{"rfc 4568 section 6.2 unknown suite", "1 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20", Crypto{}, ErrUnsupported},

		{"plain", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"32-bit tag", "7 AES_CM_128_HMAC_SHA1_32 inline:" + rfcKey, Crypto{7, AES_CM_128_HMAC_SHA1_32, rfc}, nil},
		{"gcm", "3 AEAD_AES_128_GCM inline:" + gcmKey, Crypto{3, AEAD_AES_128_GCM, gcm}, nil},
		{"lifetime power", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20", Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"lifetime 2^31", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^31", Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"lifetime decimal", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|1048576", Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"largest tag", "999999999 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{999999999, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"leading zero tag", "01 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"suite case", "1 aes_cm_128_hmac_sha1_80 INLINE:" + rfcKey, Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},
		{"tabs and spaces", "1\tAES_CM_128_HMAC_SHA1_80  inline:" + rfcKey + " ", Crypto{1, AES_CM_128_HMAC_SHA1_80, rfc}, nil},

		{"empty", "", Crypto{}, ErrMalformed},
		{"no key", "1 AES_CM_128_HMAC_SHA1_80", Crypto{}, ErrMalformed},
		{"tag 0", "0 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"tag 10 digits", "1000000000 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"tag negative", "-1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"tag letters", "a AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"suite punctuation", "1 AES-CM-128 inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"key method", "1 AES_CM_128_HMAC_SHA1_80 uri:" + rfcKey, Crypto{}, ErrMalformed},
		{"no colon", "1 AES_CM_128_HMAC_SHA1_80 inline" + rfcKey, Crypto{}, ErrMalformed},
		{"bad base64", "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFC!nVmcjkpPywjNWhcYD0mXXtxaVBR", Crypto{}, ErrMalformed},
		{"base64 newline", "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVm\ncjkpPywjNWhcYD0mXXtxaVBR", Crypto{}, ErrMalformed},
		{"base64 unpadded", "3 AEAD_AES_128_GCM inline:" + strings.TrimRight(gcmKey, "="), Crypto{}, ErrMalformed},
		{"empty key", "1 AES_CM_128_HMAC_SHA1_80 inline:", Crypto{}, ErrMalformed},
		{"gcm key for cm", "1 AES_CM_128_HMAC_SHA1_80 inline:" + gcmKey, Crypto{}, ErrMalformed},
		{"cm key for gcm", "1 AEAD_AES_128_GCM inline:" + rfcKey, Crypto{}, ErrMalformed},
		{"several key params", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + ";inline:" + rfcKey2, Crypto{}, ErrMalformed},
		{"mki alone", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|1:4", Crypto{}, ErrUnsupported},
		{"mki bad", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|x:4", Crypto{}, ErrMalformed},
		{"mki length 0", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|1:0", Crypto{}, ErrMalformed},
		{"mki wrong key length", "1 AES_CM_128_HMAC_SHA1_80 inline:" + gcmKey + "|2^20|1:4", Crypto{}, ErrMalformed},
		{"four parts", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|1:4|x", Crypto{}, ErrMalformed},
		{"lifetime bare power", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^", Crypto{}, ErrMalformed},
		{"lifetime 2^49", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^49", Crypto{}, ErrMalformed},
		{"lifetime zero", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|0", Crypto{}, ErrMalformed},
		{"lifetime letters", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|forever", Crypto{}, ErrMalformed},
		{"unencrypted srtp", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " UNENCRYPTED_SRTP", Crypto{}, ErrUnsupported},
		{"unencrypted srtcp", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " UNENCRYPTED_SRTCP", Crypto{}, ErrUnsupported},
		{"unauthenticated", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " UNAUTHENTICATED_SRTP", Crypto{}, ErrUnsupported},
		{"kdr", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " KDR=1", Crypto{}, ErrUnsupported},
		{"fec order", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " FEC_ORDER=FEC_SRTP", Crypto{}, ErrUnsupported},
		{"wsh", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " WSH=128", Crypto{}, ErrUnsupported},
		{"session param control char", "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " KDR=1\x00", Crypto{}, ErrMalformed},
		{"aes 256", "1 AES_256_CM_HMAC_SHA1_80 inline:" + key46, Crypto{}, ErrUnsupported},
		{"gcm 256", "1 AEAD_AES_256_GCM inline:" + key46, Crypto{}, ErrUnsupported},
		{"unknown suite bad base64", "1 F8_128_HMAC_SHA1_80 inline:***", Crypto{}, ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCrypto(tc.value)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				if (tc.err == ErrMalformed) == errors.Is(err, ErrUnsupported) {
					t.Fatalf("error %v is both or neither", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Tag != tc.want.Tag || got.Suite != tc.want.Suite || !bytes.Equal(got.Key, tc.want.Key) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			again, err := ParseCrypto(got.String())
			if err != nil || again.Tag != got.Tag || again.Suite != got.Suite || !bytes.Equal(again.Key, got.Key) {
				t.Fatalf("String %q does not parse back: %v", got.String(), err)
			}
		})
	}
}

func TestCryptoString(t *testing.T) {
	c, err := ParseCrypto("1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20")
	if err != nil {
		t.Fatal(err)
	}
	if want := "1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey; c.String() != want {
		t.Errorf("String() = %q, want %q", c.String(), want)
	}
}

func TestNewCrypto(t *testing.T) {
	a, b := mustCrypto(t, 5, AEAD_AES_128_GCM), mustCrypto(t, 5, AEAD_AES_128_GCM)
	if len(a.Key) != 28 || bytes.Equal(a.Key, b.Key) || a.Tag != 5 || a.Suite != AEAD_AES_128_GCM {
		t.Errorf("NewCrypto: %d-byte keys, equal %v", len(a.Key), bytes.Equal(a.Key, b.Key))
	}
	if _, err := NewCrypto(0, AES_CM_128_HMAC_SHA1_80); !errors.Is(err, ErrMalformed) {
		t.Errorf("tag 0: %v", err)
	}
	if _, err := NewCrypto(1000000000, AES_CM_128_HMAC_SHA1_80); !errors.Is(err, ErrMalformed) {
		t.Errorf("tag 10^9: %v", err)
	}
	if _, err := NewCrypto(1, "AES_256_CM_HMAC_SHA1_80"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("unsupported suite: %v", err)
	}
}

func TestSupported(t *testing.T) {
	for _, s := range []string{AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM} {
		if !Supported(s) {
			t.Errorf("%s not supported", s)
		}
	}
	for _, s := range []string{"", "AEAD_AES_256_GCM", "AES_256_CM_HMAC_SHA1_80", "F8_128_HMAC_SHA1_80", "NULL_HMAC_SHA1_80"} {
		if Supported(s) {
			t.Errorf("%q supported", s)
		}
	}
}

func TestChoose(t *testing.T) {
	offer := []string{
		"1 AES_256_CM_HMAC_SHA1_80 inline:" + key46,
		"2 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " UNENCRYPTED_SRTP",
		"3 garbage",
		"4 AES_CM_128_HMAC_SHA1_32 inline:" + rfcKey,
		"5 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey2,
	}
	c, err := Choose(offer)
	if err != nil || c.Tag != 4 || c.Suite != AES_CM_128_HMAC_SHA1_32 {
		t.Fatalf("Choose = %+v, %v; want tag 4", c, err)
	}
	if _, err := Choose(offer[:3]); !errors.Is(err, ErrUnsupported) {
		t.Errorf("nothing usable: %v", err)
	}
	if _, err := Choose(nil); !errors.Is(err, ErrUnsupported) {
		t.Errorf("no offer: %v", err)
	}
}

// Rekeyed: the peer's new key decrypts, its old one no longer does, and
// what we send goes on under the same contexts (the peer's decryption of
// our stream is not disturbed by the rekey).
func TestRekeyed(t *testing.T) {
	ours, _ := NewCrypto(1, AES_CM_128_HMAC_SHA1_80)
	theirs, _ := NewCrypto(1, AES_CM_128_HMAC_SHA1_80)
	sess, err := SessionFromSDES(ours, theirs)
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := SessionFromSDES(theirs, ours)
	pkt := func(seq uint16) []byte {
		p := make([]byte, 172)
		p[0], p[2], p[3] = 0x80, byte(seq>>8), byte(seq)
		return p
	}
	for seq := uint16(1); seq <= 3; seq++ {
		enc, _ := sess.EncryptRTP(nil, pkt(seq))
		if _, err := peer.DecryptRTP(nil, enc); err != nil {
			t.Fatalf("before the rekey: %v", err)
		}
	}
	newTheirs, _ := NewCrypto(2, AES_CM_128_HMAC_SHA1_80)
	re, err := sess.Rekeyed(newTheirs)
	if err != nil {
		t.Fatal(err)
	}
	// Our stream continues: seq 4 under the same contexts.
	enc, _ := re.EncryptRTP(nil, pkt(4))
	if _, err := peer.DecryptRTP(nil, enc); err != nil {
		t.Fatalf("our stream after the rekey: %v", err)
	}
	newPeer, _ := SessionFromSDES(newTheirs, ours)
	enc, _ = newPeer.EncryptRTP(nil, pkt(10))
	if _, err := re.DecryptRTP(nil, enc); err != nil {
		t.Fatalf("the peer's new key: %v", err)
	}
	old, _ := peer.EncryptRTP(nil, pkt(11))
	if _, err := re.DecryptRTP(nil, old); !errors.Is(err, ErrAuth) {
		t.Fatalf("the peer's old key after the rekey: %v, want ErrAuth", err)
	}
	if _, err := sess.Rekeyed(Crypto{Tag: 1, Suite: AEAD_AES_128_GCM, Key: make([]byte, 28)}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("rekey to another suite: %v, want ErrUnsupported", err)
	}
}
