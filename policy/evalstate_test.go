package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// One document filled again and again equals, hash included, the JSON
// encoding of each input: the objects' cached hashes follow their leaves.
func TestInputDocReuse(t *testing.T) {
	inputs := []*Input{
		{},
		{Method: "INVITE", Transport: "udp", Peer: Peer{IP: "203.0.113.5", Port: 5060}, Side: "external",
			From: Party{User: "201", Host: "example.com"}, To: Party{User: "+442071234567", Host: "sbc"},
			RequestURI: Party{User: "+442071234567", Host: "sbc"}, Route: "invite",
			Destination: Destination{Raw: "02071234567", E164: "+442071234567", Valid: true, Class: "national", Features: []string{}},
			UserAgent:   "TestPhone/1.0", Time: Time{UTC: "2026-03-02T09:30:00Z", Weekday: "Monday", Hour: 9, Zone: "UTC"}, Dialog: "new"},
		{Method: "REGISTER", Peer: Peer{IP: "198.51.100.7", Port: 5060}, Identity: &Identity{User: "alice", Realm: "example.com"},
			Counters: &Counters{CallsInProgress: 2, CallsLastMinute: 900}, Destination: Destination{Features: []string{"*67", "#31#"}}},
		{Method: "INVITE", Peer: Peer{IP: "198.51.100.7", Port: 7}, Identity: &Identity{User: "bob", Realm: "example.com"},
			Counters: &Counters{CallsInProgress: 2, CallsLastMinute: 1}, Trusted: "pbx", Dialog: "in-dialog"},
		{Method: "X-ODD", Transport: "wss", Peer: Peer{IP: "2001:db8::1", Port: 65535}, Destination: Destination{Class: "invalid"}},
		{Method: "INVITE", Peer: Peer{IP: "203.0.113.5", Port: 5060}, Side: "external", UserAgent: "TestPhone/1.0"},
	}
	d := newInputDoc()
	for round := range 3 {
		for i, in := range inputs {
			got := d.fill(in)
			js, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(strings.NewReader(string(js)))
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 || !ast.ValueEqual(got, want) {
				t.Fatalf("round %d input %d: value\n%v\nJSON\n%v", round, i, got, want)
			}
			if got.Hash() != want.Hash() {
				t.Fatalf("round %d input %d: hash %d, want %d", round, i, got.Hash(), want.Hash())
			}
			if !got.IsGround() {
				t.Fatalf("round %d input %d: not ground", round, i)
			}
			// The input as a key: found only by its equal.
			set := ast.NewSet(ast.NewTerm(want))
			if !set.Contains(ast.NewTerm(got)) {
				t.Fatalf("round %d input %d: not found in a set of its JSON value", round, i)
			}
		}
	}
}

// Decisions that echo the input, one after the other and concurrently,
// each see their own input (the documents are pooled).
func TestDecideEchoesOwnInput(t *testing.T) {
	e := newEngine(t, Options{Timeout: 10 * time.Second, Dir: writeDir(t, map[string]string{"p.rego": `package sipwall
decision := {"allow": true, "rule": "echo", "tags": {
	"user": input.from.user, "e164": input.destination.e164, "port": sprintf("%d", [input.peer.port]),
	"who": who, "n": sprintf("%v", [count(input.destination.features)])}}
who := input.identity.user if input.identity != null
who := "-" if input.identity == null
`})})
	check := func(i int) error {
		in := &Input{From: Party{User: fmt.Sprintf("u%d", i)}, Peer: Peer{IP: "192.0.2.1", Port: 5000 + i%7},
			Destination: Destination{E164: fmt.Sprintf("+4420%07d", i), Features: make([]string, i%3)}}
		who := "-"
		if i%2 == 0 {
			in.Identity = &Identity{User: fmt.Sprintf("id%d", i)}
			who = in.Identity.User
		}
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			return err
		}
		want := map[string]string{"user": in.From.User, "e164": in.Destination.E164,
			"port": fmt.Sprint(in.Peer.Port), "who": who, "n": fmt.Sprint(i % 3)}
		if fmt.Sprint(d.Tags) != fmt.Sprint(want) {
			return fmt.Errorf("input %d: tags %v, want %v", i, d.Tags, want)
		}
		return nil
	}
	for i := range 50 {
		if err := check(i); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < 400; i += 8 {
				if err := check(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// ruleCache gives the results OPA's own virtual cache gives, evaluation
// after evaluation (reset between them): helper rules used many times,
// partial rules looked up by key, memoized functions, `with` replacing
// input, data and rules, undefined rules.
func TestRuleCacheMatchesOPA(t *testing.T) {
	const src = `package t

import rego.v1

default big := false
big if input.n > 10
default small := false
small if not big
double(x) := 2 * x
sq(x) := x * x
names contains n if some n in input.names
byname[n] := count(n) if some n in input.names
label := "big" if big
label := "small" if small
undef if input.n == -1000
result := {
	"big": big, "small": small, "label": label,
	"d": [double(input.n), double(input.n), sq(input.n), sq(3)],
	"names": names, "has_a": "a" in names, "len_a": object.get(byname, "a", -1),
	"with_input": [l | l := label with input.n as 100],
	"with_rule": [l | l := label with big as false],
	"with_data": [x | x := data.t.limit with data.t.limit as 7],
	"undef": [u | u := undef], "nested_undef": [x | x := undef with input.n as -1000],
	"nested": [b | b := big with input as {"n": 1}],
	"after": label,
}
limit := 3
`
	pq, err := rego.New(rego.Query("data.t.result"), rego.Module("t.rego", src)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rc := &ruleCache{}
	for i := range 40 {
		in := ast.MustInterfaceToValue(map[string]any{"n": i - 5, "names": []any{"a", "bb", fmt.Sprint(i % 4)}})
		want, err := pq.Eval(context.Background(), rego.EvalParsedInput(in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pq.Eval(context.Background(), rego.EvalParsedInput(in), rego.EvalVirtualCache(rc))
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 1 {
			t.Fatalf("input %d: the test policy is undefined", i)
		}
		if len(got) != 1 || fmt.Sprint(got[0].Expressions[0].Value) != fmt.Sprint(want[0].Expressions[0].Value) {
			t.Fatalf("input %d: got %v, want %v", i, got, want)
		}
		rc.reset()
	}
}

func TestRuleCache(t *testing.T) {
	ref := func(s string) ast.Ref { return ast.MustParseRef(s) }
	c := &ruleCache{}
	v := ast.StringTerm("v")
	if x, undef := c.Get(ref("data.a.b")); x != nil || undef {
		t.Fatal("empty cache has a value")
	}
	r := ref("data.a.b")
	c.Put(r, v)
	r[2] = ast.StringTerm("changed") // the caller's slice is not kept
	if x, undef := c.Get(ref("data.a.b")); x != v || undef {
		t.Fatalf("got %v, %v", x, undef)
	}
	if x, undef := c.Get(ref("data.a")); x != nil || undef {
		t.Fatal("a prefix is cached")
	}
	if x, undef := c.Get(ref("data.b.a")); x != nil || undef {
		t.Fatal("another ref of the same hash is cached")
	}
	c.Put(ref("data.u"), nil)
	if x, undef := c.Get(ref("data.u")); x != nil || !undef {
		t.Fatal("undefined not recorded")
	}
	c.Push()
	if x, _ := c.Get(ref("data.a.b")); x != nil {
		t.Fatal("a pushed frame sees the one below")
	}
	c.Put(ref("data.a.b"), ast.StringTerm("w"))
	c.Pop()
	if x, _ := c.Get(ref("data.a.b")); x != v {
		t.Fatalf("after pop: %v", x)
	}
	if k := c.Keys(); len(k) != 1 || !k[0].Equal(ref("data.a.b")) {
		t.Fatalf("keys %v", k)
	}
	c.reset()
	if x, undef := c.Get(ref("data.a.b")); x != nil || undef {
		t.Fatal("reset kept a value")
	}
}

// A tag named by a number reads as in the decision's JSON form.
func TestDecisionTagKeyNotString(t *testing.T) {
	e := newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": true, \"tags\": {1: \"a\"}}\n"})})
	d, err := e.Decide(context.Background(), &Input{})
	if err != nil || d.Tags["1"] != "a" {
		t.Fatalf("got %+v, %v", d, err)
	}
	e = newEngine(t, Options{Dir: writeDir(t, map[string]string{"p.rego": "package sipwall\ndecision := {\"allow\": true, 1: true}\n"})})
	if _, err := e.Decide(context.Background(), &Input{}); err == nil {
		t.Fatal("a key that is not a string accepted")
	}
}

// A fired deadline does not leave a cancelled state for the next decision
// (of any engine: the states are shared).
func TestDecideAfterTimeout(t *testing.T) {
	slow := newEngine(t, Options{Timeout: time.Millisecond, Dir: writeDir(t, map[string]string{"p.rego": slowPolicy})})
	quick := newEngine(t, Options{Timeout: 10 * time.Second, Dir: writeDir(t, map[string]string{"p.rego": `package sipwall
decision := {"allow": true}
`})})
	for range 3 {
		if _, err := slow.Decide(context.Background(), &Input{}); err == nil {
			t.Fatal("no timeout")
		}
		ctx, cancel := context.WithCancel(context.Background())
		d, err := quick.Decide(ctx, &Input{})
		cancel()
		if err != nil || !d.Allow {
			t.Fatalf("after a timeout: %+v, %v", d, err)
		}
		if _, err := slow.Decide(ctx, &Input{}); err == nil {
			t.Fatal("cancelled context: no error")
		}
		if d, err := quick.Decide(context.Background(), &Input{}); err != nil || !d.Allow {
			t.Fatalf("after a cancelled context: %+v, %v", d, err)
		}
	}
}
