package sbc

import "testing"

func TestIdentityAttribution(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   *Identity
		want string
	}{
		{"none", nil, ""},
		{"digest user", &Identity{User: "alice", Realm: "sipwall"}, "alice"},
		{"trusted peer", &Identity{Trusted: "carrier", Realm: "sipwall"}, "trusted:carrier"},
		{"empty", &Identity{Realm: "sipwall"}, ""},
	} {
		if got := tc.id.Attribution(); got != tc.want {
			t.Errorf("%s: Attribution() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
