package sipwall_test

import data.sipwall

# A new INVITE from an unknown peer on the external side.
base := {
	"method": "INVITE",
	"side": "external",
	"trusted": "",
	"identity": null,
	"dialog": "new",
	"request_uri": {"user": "+442071234567", "host": "sbc.example.com"},
}

test_default_deny if {
	d := sipwall.decision with input as base
	d.allow == false
	d.status == 403
	d.rule == "default-deny"
}

test_in_dialog_allowed if {
	d := sipwall.decision with input as object.union(base, {"method": "BYE", "dialog": "in-dialog"})
	d.allow
	d.rule == "in-dialog"
}

test_internal_allowed if {
	d := sipwall.decision with input as object.union(base, {"side": "internal"})
	d.allow
	d.rule == "internal"
}

test_trusted_peer_allowed if {
	d := sipwall.decision with input as object.union(base, {"trusted": "carrier-a"})
	d.allow
	d.rule == "trusted-peer"
}

test_authenticated_allowed if {
	d := sipwall.decision with input as object.union(base, {"identity": {"user": "alice", "realm": "example.com"}})
	d.allow
	d.rule == "authenticated"
}

test_keepalive_allowed if {
	d := sipwall.decision with input as object.union(base, {"method": "OPTIONS", "request_uri": {"user": "", "host": "sbc.example.com"}})
	d.allow
	d.rule == "keepalive"
}

test_options_to_a_user_denied if {
	d := sipwall.decision with input as object.union(base, {"method": "OPTIONS"})
	not d.allow
}

test_register_unauthenticated_denied if {
	d := sipwall.decision with input as object.union(base, {"method": "REGISTER"})
	not d.allow
}
