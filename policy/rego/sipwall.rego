# sipwall default policy: deny unless one of the allow rules below
# matches. Copy this directory, edit, and point policy.dir at it.
#
# The decision is an object: allow (required), status, reason, redirect,
# tags, ban, rule. See policy/README.md for the input document.
package sipwall

default decision := {"allow": false, "status": 403, "reason": "Forbidden", "rule": "default-deny"}

# A request inside a dialog the SBC already accepted (the To header has a
# tag). The B2BUA only accepts its own dialogs.
decision := {"allow": true, "rule": "in-dialog"} if {
	input.dialog == "in-dialog"
} else := {"allow": true, "rule": "internal"} if {
	input.side == "internal"
} else := {"allow": true, "rule": "trusted-peer"} if {
	input.trusted != ""
} else := {"allow": true, "rule": "authenticated"} if {
	input.identity.user != ""
} else := {"allow": true, "rule": "keepalive"} if {
	input.method == "OPTIONS"
	input.request_uri.user == ""
}
