package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/open-policy-agent/opa/v1/ast"

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

// decisionKeys are the keys of a decision document, as terms to look up.
var decisionKeys = struct{ allow, status, reason, redirect, tags, ban, rule *ast.Term }{
	ast.StringTerm("allow"), ast.StringTerm("status"), ast.StringTerm("reason"),
	ast.StringTerm("redirect"), ast.StringTerm("tags"), ast.StringTerm("ban"), ast.StringTerm("rule"),
}

// parseDecision checks the policy's decision document. Anything
// unexpected (an unknown key, a wrong type, a status out of range, a
// control character headed for a header) is an error, so the caller fails
// closed instead of guessing. It reads the OPA value as its JSON form
// (ast.JSON) reads: a number is a json.Number, an object's key that is not
// a string never names one of the decision's keys.
func parseDecision(v ast.Value) (Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return Decision{}, fmt.Errorf("%w: %s, want an object", ErrMalformed, ast.ValueName(v))
	}
	var d Decision
	k := &decisionKeys
	known := 0
	get := func(key *ast.Term) ast.Value {
		if t := obj.Get(key); t != nil {
			known++
			return t.Value
		}
		return nil
	}
	bad := func(key *ast.Term, err error) (Decision, error) {
		return Decision{}, fmt.Errorf("%w: %q: %v", ErrMalformed, string(key.Value.(ast.String)), err)
	}
	var err error
	allow := get(k.allow)
	if allow != nil {
		b, ok := allow.(ast.Boolean)
		if !ok {
			return bad(k.allow, errors.New("want a boolean"))
		}
		d.Allow = bool(b)
	}
	if v := get(k.status); v != nil {
		if d.Status, err = toInt(v); err != nil {
			return bad(k.status, err)
		}
	}
	if v := get(k.reason); v != nil {
		if d.Reason, err = toText(v, maxReason); err != nil {
			return bad(k.reason, err)
		}
	}
	if v := get(k.redirect); v != nil {
		if d.Redirect, err = toText(v, maxRedirect); err != nil {
			return bad(k.redirect, err)
		}
		if d.Redirect != "" {
			var u sip.Uri
			if perr := sip.ParseUri(d.Redirect, &u); perr != nil || u.Host == "" {
				return bad(k.redirect, errors.New("not a SIP URI"))
			}
		}
	}
	if v := get(k.tags); v != nil {
		if d.Tags, err = toTags(v); err != nil {
			return bad(k.tags, err)
		}
	}
	if v := get(k.ban); v != nil {
		if d.Ban, err = toText(v, 32); err != nil {
			return bad(k.ban, err)
		}
		if d.Ban != "" {
			dur, perr := time.ParseDuration(d.Ban)
			if perr != nil || dur <= 0 || dur > maxBan {
				return bad(k.ban, fmt.Errorf("want a duration up to %s", maxBan))
			}
		}
	}
	if v := get(k.rule); v != nil {
		if d.Rule, err = toText(v, maxRule); err != nil {
			return bad(k.rule, err)
		}
	}
	if known != obj.Len() {
		return Decision{}, unknownKey(obj)
	}
	if allow == nil {
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

// unknownKey names a key of obj that is not a decision's, nil if none.
func unknownKey(obj ast.Object) error {
	var err error
	obj.Until(func(k, _ *ast.Term) bool {
		if s, ok := k.Value.(ast.String); ok {
			switch string(s) {
			case "allow", "status", "reason", "redirect", "tags", "ban", "rule":
				return false
			}
		}
		err = fmt.Errorf("%w: %s: unknown key", ErrMalformed, k)
		return true
	})
	return err
}

func toInt(v ast.Value) (int, error) {
	n, ok := v.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("want a number")
	}
	i, err := json.Number(n).Int64()
	if err != nil || i < 0 || i > 999 {
		return 0, fmt.Errorf("want an integer status")
	}
	return int(i), nil
}

// toText accepts a string of printable characters (no CR, LF, NUL or other
// controls: these end up in SIP headers and logs).
func toText(v ast.Value, max int) (string, error) {
	s, ok := v.(ast.String)
	if !ok {
		return "", fmt.Errorf("want a string")
	}
	return checkText(string(s), max)
}

func checkText(s string, max int) (string, error) {
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

// toTags reads the tags from their JSON form: an object's key that is not
// a string is named by its JSON text there.
func toTags(tv ast.Value) (map[string]string, error) {
	v, err := ast.JSON(tv)
	if err != nil {
		return nil, fmt.Errorf("want an object of strings")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want an object of strings")
	}
	if len(obj) > maxTags {
		return nil, fmt.Errorf("more than %d tags", maxTags)
	}
	tags := make(map[string]string, len(obj))
	for k, val := range obj {
		if _, err := checkText(k, maxTagLen); err != nil || k == "" {
			return nil, fmt.Errorf("tag name %q: invalid", trunc(k, 32))
		}
		s, ok := val.(string)
		if !ok {
			return nil, fmt.Errorf("tag %s: want a string", k)
		}
		s, err := checkText(s, maxTagLen)
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
