package b2bua

import (
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestWithUser(t *testing.T) {
	var target, tel, sipURI sip.Uri
	if err := sip.ParseUri("sip:10.0.0.10:5060;transport=tcp", &target); err != nil {
		t.Fatal(err)
	}
	_ = sip.ParseUri("tel:#31# +44 (20);phone-context=example.com", &tel)
	_ = sip.ParseUri("sip:1000@sbc", &sipURI)
	got := withUser(target, &tel)
	if got.User != "%2331%23%20+44%20(20);phone-context=example.com" || got.UriParams.GetOr("user", "") != "phone" || got.UriParams.GetOr("transport", "") != "tcp" {
		t.Errorf("tel: %s", got.String())
	}
	if target.UriParams.Has("user") {
		t.Error("the target's parameters were changed")
	}
	if got := withUser(target, &sipURI); got.User != "1000" || got.UriParams.Has("user") {
		t.Errorf("sip: %s", got.String())
	}
	if u := requestUser(&tel); u != "#31# +44 (20);phone-context=example.com" {
		t.Errorf("requestUser(tel) = %q", u)
	}
}
