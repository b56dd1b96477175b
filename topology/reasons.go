package topology

// Reason phrases of RFC 3261 section 21 and of the RFCs that registered
// codes since. Toward the outside a response carries these, never the
// inside's own words ("Busy Here (Asterisk PBX 18.2.1)").
var reasonPhrases = map[int]string{
	100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
	183: "Session Progress", 199: "Early Dialog Terminated",
	200: "OK", 202: "Accepted", 204: "No Notification",
	300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
	305: "Use Proxy", 380: "Alternative Service",
	400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
	404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
	407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
	412: "Conditional Request Failed", 413: "Request Entity Too Large",
	414: "Request-URI Too Long", 415: "Unsupported Media Type", 416: "Unsupported URI Scheme",
	417: "Unknown Resource-Priority", 420: "Bad Extension", 421: "Extension Required",
	422: "Session Interval Too Small", 423: "Interval Too Brief",
	424: "Bad Location Information", 428: "Use Identity Header",
	429: "Provide Referrer Identity", 430: "Flow Failed", 433: "Anonymity Disallowed",
	436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
	439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded",
	469: "Bad Info Package", 470: "Consent Needed", 480: "Temporarily Unavailable",
	481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
	484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
	488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
	493: "Undecipherable", 494: "Security Agreement Required",
	500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
	503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
	513: "Message Too Large", 555: "Push Notification Service Not Supported",
	580: "Precondition Failure",
	600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
	606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}

// classPhrases name a code nobody registered by its class (the headings
// of RFC 3261 section 21).
var classPhrases = [...]string{1: "Provisional", 2: "Successful", 3: "Redirection",
	4: "Request Failure", 5: "Server Failure", 6: "Global Failure"}

// Phrase is the registered reason phrase of a status code, or its class's
// name for an unregistered one ("" outside 100-699).
func Phrase(code int) string {
	if p, ok := reasonPhrases[code]; ok {
		return p
	}
	if code >= 100 && code < 700 {
		return classPhrases[code/100]
	}
	return ""
}

// Warning texts of RFC 3261 section 20.43 and RFC 5630.
var warningTexts = map[int]string{
	300: "Incompatible network protocol", 301: "Incompatible network address formats",
	302: "Incompatible transport protocol", 303: "Incompatible bandwidth units",
	304: "Media type not available", 305: "Incompatible media format",
	306: "Attribute not understood", 307: "Session description parameter not understood",
	330: "Multicast not available", 331: "Unicast not available",
	370: "Insufficient bandwidth", 380: "SIPS Not Allowed", 381: "SIPS Required",
	399: "Miscellaneous warning",
}
