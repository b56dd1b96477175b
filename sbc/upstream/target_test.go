package upstream

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		uri       string
		weight    int
		addr      string
		transport string
		wantW     int
	}{
		{"sip:10.0.0.10", 1, "10.0.0.10:5060", "udp", 1},
		{"sip:10.0.0.10:5080", 2, "10.0.0.10:5080", "udp", 2},
		{"sip:pbx@10.0.0.10:5061;transport=tcp", 1, "10.0.0.10:5061", "tcp", 1},
		{"sip:10.0.0.10;Transport=UDP", 1, "10.0.0.10:5060", "udp", 1},
		{"sip:[2001:db8::1]:5070;transport=tcp", 1, "[2001:db8::1]:5070", "tcp", 1},
		{"sip:10.0.0.12:5061;transport=TLS", 1, "10.0.0.12:5061", "tls", 1},
		{"sip:[::ffff:10.0.0.1]", 1, "10.0.0.1:5060", "udp", 1},
		{"sip:127.0.0.1", 0, "127.0.0.1:5060", "udp", 1}, // weight 0 means 1
	}
	for _, tc := range tests {
		got, err := ParseTarget("pbx", tc.uri, 1, tc.weight)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tc.uri, err)
			continue
		}
		if want := netip.MustParseAddrPort(tc.addr); got.Addr != want {
			t.Errorf("ParseTarget(%q).Addr = %v, want %v", tc.uri, got.Addr, want)
		}
		if got.Transport != tc.transport {
			t.Errorf("ParseTarget(%q).Transport = %q, want %q", tc.uri, got.Transport, tc.transport)
		}
		if got.Weight != tc.wantW || got.Priority != 1 || got.Name != "pbx" {
			t.Errorf("ParseTarget(%q) = %+v", tc.uri, got)
		}
		if got.URI.Scheme != "sip" {
			t.Errorf("ParseTarget(%q).URI.Scheme = %q", tc.uri, got.URI.Scheme)
		}
	}
}

func TestParseTargetErrors(t *testing.T) {
	tests := []struct {
		name, uri        string
		priority, weight int
		want             string
	}{
		{"", "sip:10.0.0.1", 1, 1, "empty name"},
		{"a", "sip:pbx.example.com", 1, 1, "ip address"},
		{"a", "sips:10.0.0.1", 1, 1, "scheme"},
		{"a", "tel:+15551234", 1, 1, "scheme"},
		{"a", "sip:10.0.0.1;transport=sctp", 1, 1, "unsupported transport"},
		{"a", "sip:10.0.0.1", -1, 1, "negative priority"},
		{"a", "sip:10.0.0.1", 1, -2, "negative weight"},
		{"a", "", 1, 1, "a"},
	}
	for _, tc := range tests {
		_, err := ParseTarget(tc.name, tc.uri, tc.priority, tc.weight)
		if err == nil {
			t.Errorf("ParseTarget(%q, %q): no error", tc.name, tc.uri)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTarget(%q, %q) = %v, want it to mention %q", tc.name, tc.uri, err, tc.want)
		}
	}
}
