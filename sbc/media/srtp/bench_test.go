package srtp

import (
	"os"
	"os/exec"
	"runtime/debug"
	"testing"
)

// pair is a session and the peer's mirror of it (keys swapped), so that
// what one encrypts the other decrypts.
func pair(tb testing.TB, suite string) (ours, peer *Session) {
	tb.Helper()
	local, remote := mustCrypto(tb, 1, suite), mustCrypto(tb, 1, suite)
	ours, err := SessionFromSDES(local, remote)
	if err != nil {
		tb.Fatal(err)
	}
	peer, err = SessionFromSDES(remote, local)
	if err != nil {
		tb.Fatal(err)
	}
	return ours, peer
}

// setSeq writes an RTP sequence number in place.
func setSeq(pkt []byte, seq uint16) {
	pkt[2], pkt[3] = byte(seq>>8), byte(seq)
}

func BenchmarkEncryptRTP(b *testing.B) {
	for _, tc := range testSuites {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := pair(b, tc.name)
			pkt := rtpPacket(b, 0x1234, 0)
			dst := make([]byte, 0, 3000) // the relay's scratch buffer
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			var seq uint16
			for b.Loop() {
				seq++
				setSeq(pkt, seq)
				if _, err := s.EncryptRTP(dst, pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecryptRTP decrypts a stream the peer encrypted ahead, a batch
// at a time with the timer stopped (replay protection refuses a packet
// decrypted twice).
func BenchmarkDecryptRTP(b *testing.B) {
	const batch = 4096
	for _, tc := range testSuites {
		b.Run(tc.name, func(b *testing.B) {
			s, peer := pair(b, tc.name)
			pkt := rtpPacket(b, 0x1234, 0)
			enc := make([][]byte, batch)
			for i := range enc {
				enc[i] = make([]byte, 0, 1500)
			}
			dst := make([]byte, 0, 3000)
			var seq uint16
			fill := func() {
				for i := range enc {
					seq++
					setSeq(pkt, seq)
					var err error
					if enc[i], err = peer.EncryptRTP(enc[i][:0], pkt); err != nil {
						b.Fatal(err)
					}
				}
			}
			fill()
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == batch {
					b.StopTimer()
					fill()
					i = 0
					b.StartTimer()
				}
				if _, err := s.DecryptRTP(dst, enc[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// TestNoAllocPerPacket is the benchmarks' allocs/op as a test that fails:
// steady state, a 172-byte packet, the relay's scratch buffer. Under the
// race detector sync.Pool drops what it is given back, and pion's AES-CM
// keeps its keystream buffers in one: there the test runs itself again in
// a build without -race (CI runs only with -race).
func TestNoAllocPerPacket(t *testing.T) {
	if raceEnabled() && os.Getenv("SIPWALL_SRTP_ALLOC_CHILD") == "" {
		gotool, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("the race build cannot count allocations and there is no go tool to build without -race: %v", err)
		}
		cmd := exec.Command(gotool, "test", "-count=1", "-run", "^TestNoAllocPerPacket$", ".")
		cmd.Env = append(os.Environ(), "SIPWALL_SRTP_ALLOC_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("without -race: %v\n%s", err, out)
		}
		return
	}
	for _, tc := range testSuites {
		s, peer := pair(t, tc.name)
		pkt := rtpPacket(t, 0x1234, 0)
		rtcpPkt := rtcpPacket(t, 0x1234, 1)
		enc := make([]byte, 0, 1500)
		dst := make([]byte, 0, 3000)
		var seq uint16
		step := func() {
			seq++
			setSeq(pkt, seq)
			var err error
			if enc, err = peer.EncryptRTP(enc[:0], pkt); err != nil {
				t.Fatal(err)
			}
			if _, err = s.DecryptRTP(dst, enc); err != nil {
				t.Fatal(err)
			}
			if _, err = s.EncryptRTP(dst, pkt); err != nil {
				t.Fatal(err)
			}
			if _, err = s.EncryptRTCP(dst, rtcpPkt); err != nil {
				t.Fatal(err)
			}
		}
		step() // the first packet of an SSRC makes its state
		if n := testing.AllocsPerRun(1000, step); n != 0 {
			t.Errorf("%s: %v allocations per packet", tc.name, n)
		}
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
