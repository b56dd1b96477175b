package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Decision is what the policy decided about one request. The Rego
// document is {"allow", "status", "reason", "redirect", "tags", "ban",
// "rule"}; only "allow" is required.
type Decision struct {
	// Allow lets the request pass on to the next layer.
	Allow bool `json:"allow"`
	// Status and Reason answer a denied request (default 403 Forbidden).
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Redirect, when set, answers 302 with this URI as Contact (whatever
	// Allow says).
	Redirect string `json:"redirect,omitempty"`
	// Tags are copied into the request's tags on allow (routing hints,
	// log labels).
	Tags map[string]string `json:"tags,omitempty"`
	// Ban bans the transport peer for this duration ("1h").
	Ban string `json:"ban,omitempty"`
	// Rule names the rule that decided, for logs.
	Rule string `json:"rule,omitempty"`
}

// ErrMalformed: the policy's decision document is not a valid Decision.
var ErrMalformed = errors.New("malformed policy decision")

// Bounds on what a decision may carry into responses and tags.
const (
	maxReason   = 128
	maxTags     = 16
	maxTagLen   = 128
	maxRedirect = 512
	maxRule     = 128
	maxBan      = 30 * 24 * time.Hour
)

// parseDecision checks the policy's decision document. Anything
// unexpected (an unknown key, a wrong type, a status out of range, a
// control character headed for a header) is an error, so the caller fails
// closed instead of guessing.
func parseDecision(v any) (Decision, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("%w: %T, want an object", ErrMalformed, v)
	}
	var d Decision
	allowSeen := false
	for k, val := range obj {
		var err error
		switch k {
		case "allow":
			b, ok := val.(bool)
			if !ok {
				err = fmt.Errorf("want a boolean")
			}
			d.Allow, allowSeen = b, true
		case "status":
			d.Status, err = toInt(val)
		case "reason":
			d.Reason, err = toText(val, maxReason)
		case "redirect":
			d.Redirect, err = toText(val, maxRedirect)
			if err == nil && d.Redirect != "" {
				var u sip.Uri
				if perr := sip.ParseUri(d.Redirect, &u); perr != nil || u.Host == "" {
					err = fmt.Errorf("not a SIP URI")
				}
			}
		case "tags":
			d.Tags, err = toTags(val)
		case "ban":
			d.Ban, err = toText(val, 32)
			if err == nil && d.Ban != "" {
				dur, perr := time.ParseDuration(d.Ban)
				if perr != nil || dur <= 0 || dur > maxBan {
					err = fmt.Errorf("want a duration up to %s", maxBan)
				}
			}
		case "rule":
			d.Rule, err = toText(val, maxRule)
		default:
			err = fmt.Errorf("unknown key")
		}
		if err != nil {
			return Decision{}, fmt.Errorf("%w: %q: %v", ErrMalformed, k, err)
		}
	}
	if !allowSeen {
		return Decision{}, fmt.Errorf("%w: no \"allow\"", ErrMalformed)
	}
	if !d.Allow && d.Redirect == "" {
		if d.Status == 0 {
			d.Status = 403
		}
		if d.Status < 400 || d.Status > 699 {
			return Decision{}, fmt.Errorf("%w: status %d: want 400..699", ErrMalformed, d.Status)
		}
		if d.Reason == "" {
			d.Reason = sbc.ReasonPhrase(d.Status, "Rejected by Policy")
		}
	}
	return d, nil
}

func toInt(v any) (int, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("want a number")
	}
	i, err := n.Int64()
	if err != nil || i < 0 || i > 999 {
		return 0, fmt.Errorf("want an integer status")
	}
	return int(i), nil
}

// toText accepts a string of printable characters (no CR, LF, NUL or other
// controls: these end up in SIP headers and logs).
func toText(v any, max int) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("want a string")
	}
	if len(s) > max {
		return "", fmt.Errorf("longer than %d bytes", max)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("control character")
		}
	}
	return s, nil
}

func toTags(v any) (map[string]string, error) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want an object of strings")
	}
	if len(obj) > maxTags {
		return nil, fmt.Errorf("more than %d tags", maxTags)
	}
	tags := make(map[string]string, len(obj))
	for k, val := range obj {
		if _, err := toText(k, maxTagLen); err != nil || k == "" {
			return nil, fmt.Errorf("tag name %q: invalid", trunc(k, 32))
		}
		s, err := toText(val, maxTagLen)
		if err != nil {
			return nil, fmt.Errorf("tag %s: %v", k, err)
		}
		tags[k] = s
	}
	return tags, nil
}

// tagString renders tags sorted, for logs.
func tagString(t map[string]string) string {
	if len(t) == 0 {
		return ""
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + t[k])
	}
	return b.String()
}
