package srtp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func FuzzParseCrypto(f *testing.F) {
	for _, s := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + "|2^20|1:32",
		"1 AES_CM_128_HMAC_SHA1_32 inline:" + rfcKey + "|1048576",
		"3 AEAD_AES_128_GCM inline:" + gcmKey,
		"2 F8_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5QUJjZGVm|2^20|1:4;inline:QUJjZGVmMTIzNDU2Nzg5QUJDREUwMTIzNDU2Nzg5|2^20|2:4 FEC_ORDER=FEC_SRTP",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + rfcKey + " UNENCRYPTED_SRTP",
		"01\tAES_CM_128_HMAC_SHA1_80 INLINE:" + rfcKey,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCrypto(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("%q: error %v is neither ErrMalformed nor ErrUnsupported", s, err)
			}
			return
		}
		again, err := ParseCrypto(c.String())
		if err != nil {
			t.Fatalf("%q parsed, its String %q does not: %v", s, c.String(), err)
		}
		if again.Tag != c.Tag || again.Suite != c.Suite || !bytes.Equal(again.Key, c.Key) {
			t.Fatalf("%q: %+v, then %+v", s, c, again)
		}
		if _, err := SessionFromSDES(c, c); err != nil {
			t.Fatalf("%q parsed but makes no session: %v", s, err)
		}
	})
}

func FuzzParseFingerprint(f *testing.F) {
	c, err := NewCertificate()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		c.Fingerprint(),
		"sha-1 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33",
		"SHA-256 ab:cd",
		"md5 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%q: error %v is not ErrMalformed", s, err)
			}
			return
		}
		again, err := ParseFingerprint(fp.String())
		if err != nil || again.Hash != fp.Hash || !bytes.Equal(again.Value, fp.Value) {
			t.Fatalf("%q: %+v, then %+v, %v", s, fp, again, err)
		}
	})
}

func FuzzICEAnswer(f *testing.F) {
	f.Add(bindingRequest(f, checkOpts{nominate: true}))
	f.Add(bindingRequest(f, checkOpts{noFP: true}))
	f.Add(bindingRequest(f, checkOpts{afterMI: true}))
	f.Add(bindingRequest(f, checkOpts{class: 1}))
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd, RemoteUfrag: remoteUfrag}
	src := netip.MustParseAddrPort("192.0.2.7:50000")
	f.Fuzz(func(t *testing.T, req []byte) {
		orig := bytes.Clone(req)
		resp, nominated, err := ice.Answer(req, src)
		if !bytes.Equal(req, orig) {
			t.Fatal("Answer changed the request")
		}
		if err != nil {
			if resp != nil || nominated {
				t.Fatal("a response with an error")
			}
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is neither ErrAuth nor ErrMalformed", err)
			}
			return
		}
		// Anything answered came with our password: the fuzzer rarely
		// gets here, the seeds do.
		verifyResponse(t, req, resp, src)
	})
}
