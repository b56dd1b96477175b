package sbc

// Attribution names whom a request is attributed to in the call log, the
// admin API, the console and the registrar's records: the authenticated
// user, or "trusted:<name>" for a peer trusted by its address or
// certificate. It is empty when nothing authenticated the request (the
// inside, auth off, or before the auth layer ran). Headers such as From
// are the sender's claim and never count here: a caller authenticated as
// alice who writes From: bob is alice.
func (id *Identity) Attribution() string {
	switch {
	case id == nil:
		return ""
	case id.User != "":
		return id.User
	case id.Trusted != "":
		return "trusted:" + id.Trusted
	}
	return ""
}
