package rules

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sipwall/sipwall/policy"
)

//go:embed lists/*.txt
var shippedLists embed.FS

// Bounds on a rule file: a reload must not be able to eat the process.
const (
	maxFileSize   = 4 << 20
	maxRules      = 1000
	maxListPrefix = 200000
)

// ErrInvalid wraps every rule file problem, so callers can tell a bad
// file (keep the old rules) from an I/O error.
var ErrInvalid = errors.New("invalid rule file")

// Measures.
const (
	CallsPerMinute  = "calls_per_minute"
	ConcurrentCalls = "concurrent_calls"
	ShortCalls      = "short_calls"
	CallsPerDay     = "calls_per_day"
	MinutesPerDay   = "minutes_per_day"
	CallDuration    = "call_duration"
	NewCountry      = "new_country"
	OutsideHours    = "outside_hours"
	FailedRatio     = "failed_ratio"
)

// Actions.
const (
	ActReject       = "reject"
	ActTeardown     = "teardown"
	ActBlockAccount = "block_account"
	ActBanSource    = "ban_source"
	ActAlert        = "alert"
)

var measures = []string{CallsPerMinute, ConcurrentCalls, ShortCalls, CallsPerDay, MinutesPerDay, CallDuration, NewCountry, OutsideHours, FailedRatio}
var actions = []string{ActReject, ActTeardown, ActBlockAccount, ActBanSource, ActAlert}
var pers = []string{"user", "source", "prefix"}
var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// RuleSet is a compiled rule file. It is immutable once built; Engine.Swap
// replaces it as a whole.
type RuleSet struct {
	Name    string              // file name, for messages
	Country string              // ISO country of national numbers ("" = none)
	Zone    *time.Location      // zone of days and hours (default UTC)
	Lists   map[string][]string // effective prefix lists, sorted
	Sets    []Set

	home string // calling code of Country
}

// Set is one entry of rule_sets: the rules and the callers they apply to.
type Set struct {
	Name    string
	Users   []string // "*" = every authenticated user
	Trusted []string // trusted peer names ("*" = every trusted peer)
	Rules   []*Rule
}

// Rule is one compiled rule. Thresholds compare with ">=".
type Rule struct {
	ID            string // "<set>/<rule>", the counters' key
	Name          string
	Lists         []string
	Prefixes      []string
	International bool
	Unnormal      bool
	Measure       string
	Per           string
	Warning       float64 // 0 = none
	Critical      float64 // 0 = none (alert only at Warning)
	Action        string
	Status        int
	BlockFor      time.Duration
	ShortSeconds  int
	Days          [7]bool
	From, To      int // minutes after midnight
	HasHours      bool
	Shadow        bool
	Line          int

	match    map[string]struct{} // every prefix of every list and Prefixes
	matchAll bool
}

// File format (unexported: only the YAML is the interface).
type fileDoc struct {
	Country  string              `yaml:"country"`
	Zone     string              `yaml:"zone"`
	Lists    map[string][]string `yaml:"lists"`
	RuleSets []fileSet           `yaml:"rule_sets"`
}

type fileSet struct {
	Name      string `yaml:"name"`
	AppliesTo struct {
		Users   []string `yaml:"users"`
		Trusted []string `yaml:"trusted"`
	} `yaml:"applies_to"`
	Rules []fileRule `yaml:"rules"`
}

type fileRule struct {
	Name  string `yaml:"name"`
	Match struct {
		Lists          []string `yaml:"lists"`
		Prefixes       []string `yaml:"prefixes"`
		International  bool     `yaml:"international"`
		Unnormalisable bool     `yaml:"unnormalisable"`
	} `yaml:"match"`
	Measure      string   `yaml:"measure"`
	Per          string   `yaml:"per"`
	Warning      float64  `yaml:"warning"`
	Critical     float64  `yaml:"critical"`
	Action       string   `yaml:"action"`
	Status       int      `yaml:"status"`
	BlockFor     string   `yaml:"block_for"`
	ShortSeconds int      `yaml:"short_seconds"`
	Hours        *fileHrs `yaml:"hours"`
	Shadow       bool     `yaml:"shadow"`
}

type fileHrs struct {
	Days []string `yaml:"days"`
	From string   `yaml:"from"`
	To   string   `yaml:"to"`
}

// Load reads and parses a rule file.
func Load(path string) (*RuleSet, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load rules %s: %w", path, err)
	}
	if fi.Size() > maxFileSize {
		return nil, fmt.Errorf("load rules %s: larger than %d bytes: %w", path, maxFileSize, ErrInvalid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load rules %s: %w", path, err)
	}
	return Parse(data, path)
}

type parser struct{ name string }

func (p parser) errf(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %w", p.name, line, fmt.Sprintf(format, args...), ErrInvalid)
}

// Parse parses a rule file strictly: unknown keys, unknown measures,
// actions, lists and days are errors naming the key and its line.
func Parse(data []byte, name string) (*RuleSet, error) {
	p := parser{name: name}
	if len(data) > maxFileSize {
		return nil, p.errf(0, "larger than %d bytes", maxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", name, err, ErrInvalid)
	}
	var doc fileDoc
	var top *yaml.Node
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		top = root.Content[0]
		if err := p.checkKeys(top, reflect.TypeOf(doc), ""); err != nil {
			return nil, err
		}
		if err := top.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s: %v: %w", name, err, ErrInvalid)
		}
	} else {
		top = &yaml.Node{Kind: yaml.MappingNode}
	}

	rs := &RuleSet{Name: name, Country: strings.ToUpper(doc.Country), Zone: time.UTC, Lists: map[string][]string{}}
	if rs.Country != "" {
		// The calling code of the home country, taken from the normaliser
		// itself so both always agree.
		e, ok := policy.NormalizeE164("012345678", rs.Country)
		if !ok {
			return nil, p.errf(keyLine(top, "country"), "country: unknown country %q", doc.Country)
		}
		rs.home = countryCode(e[1:])
	}
	if doc.Zone != "" {
		loc, err := time.LoadLocation(doc.Zone)
		if err != nil {
			return nil, p.errf(keyLine(top, "zone"), "zone: %v", err)
		}
		rs.Zone = loc
	}
	if err := p.lists(rs, doc.Lists, valueOf(top, "lists")); err != nil {
		return nil, err
	}

	setsNode := valueOf(top, "rule_sets")
	setNames := map[string]bool{}
	total := 0
	for i, fs := range doc.RuleSets {
		sn := item(setsNode, i)
		if fs.Name == "" {
			return nil, p.errf(sn.Line, "rule_sets[%d]: name is required", i)
		}
		if setNames[fs.Name] {
			return nil, p.errf(keyLine(sn, "name"), "rule_sets[%d]: duplicate name %q", i, fs.Name)
		}
		setNames[fs.Name] = true
		if len(fs.AppliesTo.Users) == 0 && len(fs.AppliesTo.Trusted) == 0 {
			return nil, p.errf(keyLine(sn, "applies_to"), "rule set %q: applies_to names no users and no trusted peers", fs.Name)
		}
		set := Set{Name: fs.Name, Users: fs.AppliesTo.Users, Trusted: fs.AppliesTo.Trusted}
		rulesNode := valueOf(sn, "rules")
		names := map[string]bool{}
		for j, fr := range fs.Rules {
			if total++; total > maxRules {
				return nil, p.errf(sn.Line, "more than %d rules", maxRules)
			}
			rn := item(rulesNode, j)
			r, err := p.rule(rs, fs.Name, fr, rn)
			if err != nil {
				return nil, err
			}
			if names[r.Name] {
				return nil, p.errf(keyLine(rn, "name"), "rule set %q: duplicate rule name %q", fs.Name, r.Name)
			}
			names[r.Name] = true
			set.Rules = append(set.Rules, r)
		}
		rs.Sets = append(rs.Sets, set)
	}
	return rs, nil
}

// lists loads the shipped lists and applies the file's: a name that is
// shipped is extended (an entry "-<prefix>" removes a shipped prefix), a
// new name defines a list.
func (p parser) lists(rs *RuleSet, file map[string][]string, n *yaml.Node) error {
	sets := map[string]map[string]bool{}
	entries, _ := shippedLists.ReadDir("lists")
	for _, e := range entries {
		data, _ := shippedLists.ReadFile("lists/" + e.Name())
		l, err := parseList(data)
		if err != nil {
			return fmt.Errorf("shipped list %s: %v", e.Name(), err)
		}
		sets[strings.TrimSuffix(e.Name(), ".txt")] = l
	}
	count := 0
	for name, prefixes := range file {
		line := keyLine(n, name)
		if name == "" {
			return p.errf(line, "lists: empty list name")
		}
		s := sets[name]
		if s == nil {
			s = map[string]bool{}
			sets[name] = s
		}
		for _, pf := range prefixes {
			remove := strings.HasPrefix(pf, "-")
			pf = strings.TrimPrefix(pf, "-")
			if !validPrefix(pf) {
				return p.errf(line, "lists.%s: %q is not an E.164 prefix (1-15 digits, no '+')", name, pf)
			}
			if remove {
				delete(s, pf)
			} else {
				s[pf] = true
			}
			if count++; count > maxListPrefix {
				return p.errf(line, "lists: more than %d prefixes", maxListPrefix)
			}
		}
	}
	for name, s := range sets {
		l := make([]string, 0, len(s))
		for pf := range s {
			l = append(l, pf)
		}
		sort.Strings(l)
		rs.Lists[name] = l
	}
	return nil
}

func parseList(data []byte) (map[string]bool, error) {
	s := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		t := sc.Text()
		if i := strings.IndexByte(t, '#'); i >= 0 {
			t = t[:i]
		}
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		if !validPrefix(t) {
			return nil, fmt.Errorf("line %d: %q is not an E.164 prefix", ln, t)
		}
		s[t] = true
	}
	return s, sc.Err()
}

func validPrefix(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (p parser) rule(rs *RuleSet, set string, fr fileRule, n *yaml.Node) (*Rule, error) {
	line := func(k string) int { return keyLine(n, k) }
	if fr.Name == "" {
		return nil, p.errf(n.Line, "rule set %q: rule without a name", set)
	}
	r := &Rule{
		ID: set + "/" + fr.Name, Name: fr.Name, Lists: fr.Match.Lists, Prefixes: fr.Match.Prefixes,
		International: fr.Match.International, Unnormal: fr.Match.Unnormalisable,
		Measure: fr.Measure, Per: fr.Per, Warning: fr.Warning, Critical: fr.Critical,
		Action: fr.Action, Status: fr.Status, ShortSeconds: fr.ShortSeconds, Shadow: fr.Shadow,
		Line: n.Line, match: map[string]struct{}{},
	}
	where := fmt.Sprintf("rule %q", r.ID)
	if !contains(measures, r.Measure) {
		return nil, p.errf(line("measure"), "%s: measure: %q is not one of %s", where, r.Measure, strings.Join(measures, ", "))
	}
	if r.Per == "" {
		r.Per = "user"
	}
	if !contains(pers, r.Per) {
		return nil, p.errf(line("per"), "%s: per: %q is not one of %s", where, r.Per, strings.Join(pers, ", "))
	}
	if r.Action == "" {
		r.Action = ActAlert
	}
	if !contains(actions, r.Action) {
		return nil, p.errf(line("action"), "%s: action: %q is not one of %s", where, r.Action, strings.Join(actions, ", "))
	}
	if r.Warning < 0 || r.Critical < 0 {
		return nil, p.errf(line("critical"), "%s: negative threshold", where)
	}
	if r.Warning == 0 && r.Critical == 0 {
		return nil, p.errf(n.Line, "%s: needs warning or critical", where)
	}
	if r.Warning > 0 && r.Critical > 0 && r.Warning >= r.Critical {
		return nil, p.errf(line("warning"), "%s: warning %v must be below critical %v", where, r.Warning, r.Critical)
	}
	switch r.Measure {
	case NewCountry, OutsideHours:
		if r.Critical > 1 || r.Warning > 1 {
			return nil, p.errf(line("critical"), "%s: %s is 0 or 1: use critical: 1 (or warning: 1)", where, r.Measure)
		}
	case FailedRatio:
		if r.Critical > 100 || r.Warning > 100 {
			return nil, p.errf(line("critical"), "%s: failed_ratio is a percentage (0-100)", where)
		}
	case CallDuration:
		if r.Action != ActTeardown && r.Action != ActAlert {
			return nil, p.errf(line("action"), "%s: call_duration takes action teardown or alert", where)
		}
	}
	if r.Action == ActTeardown && r.Measure != CallDuration && r.Measure != MinutesPerDay {
		return nil, p.errf(line("action"), "%s: teardown needs measure call_duration or minutes_per_day", where)
	}
	if r.Status == 0 {
		r.Status = 403
	}
	if r.Status < 400 || r.Status > 699 {
		return nil, p.errf(line("status"), "%s: status %d is not a final error status (400-699)", where, r.Status)
	}
	r.BlockFor = time.Hour
	if fr.BlockFor != "" {
		d, err := time.ParseDuration(fr.BlockFor)
		if err != nil || d <= 0 {
			return nil, p.errf(line("block_for"), "%s: block_for: %q is not a positive duration (\"1h\")", where, fr.BlockFor)
		}
		r.BlockFor = d
	}
	if r.Measure == ShortCalls {
		if r.ShortSeconds <= 0 {
			r.ShortSeconds = 10
		}
	} else if r.ShortSeconds != 0 {
		return nil, p.errf(line("short_seconds"), "%s: short_seconds only applies to short_calls", where)
	}
	if r.Measure == OutsideHours {
		if fr.Hours == nil {
			return nil, p.errf(n.Line, "%s: outside_hours needs hours", where)
		}
	} else if fr.Hours != nil {
		return nil, p.errf(line("hours"), "%s: hours only applies to outside_hours", where)
	}
	if h := fr.Hours; h != nil {
		hn := valueOf(n, "hours")
		if len(h.Days) == 0 {
			h.Days = []string{"mon", "tue", "wed", "thu", "fri"}
		}
		for _, d := range h.Days {
			wd, ok := dayNames[strings.ToLower(d)]
			if !ok {
				return nil, p.errf(keyLine(hn, "days"), "%s: hours.days: %q is not mon..sun", where, d)
			}
			r.Days[wd] = true
		}
		var ok1, ok2 bool
		r.From, ok1 = clock(h.From)
		r.To, ok2 = clock(h.To)
		if !ok1 {
			return nil, p.errf(keyLine(hn, "from"), "%s: hours.from: %q is not HH:MM", where, h.From)
		}
		if !ok2 || r.To == r.From {
			return nil, p.errf(keyLine(hn, "to"), "%s: hours.to: %q is not HH:MM after from", where, h.To)
		}
		r.HasHours = true
	}
	ml := valueOf(valueOf(n, "match"), "lists")
	for _, l := range r.Lists {
		pfs, ok := rs.Lists[l]
		if !ok {
			names := make([]string, 0, len(rs.Lists))
			for k := range rs.Lists {
				names = append(names, k)
			}
			sort.Strings(names)
			return nil, p.errf(lineOr(ml, n), "%s: match.lists: no list %q (have %s)", where, l, strings.Join(names, ", "))
		}
		for _, pf := range pfs {
			r.match[pf] = struct{}{}
		}
	}
	for _, pf := range r.Prefixes {
		pf = strings.TrimPrefix(pf, "+")
		if !validPrefix(pf) {
			return nil, p.errf(lineOr(valueOf(valueOf(n, "match"), "prefixes"), n), "%s: match.prefixes: %q is not an E.164 prefix", where, pf)
		}
		r.match[pf] = struct{}{}
	}
	if r.International && rs.home == "" {
		return nil, p.errf(line("match"), "%s: match.international needs country", where)
	}
	r.matchAll = len(r.match) == 0 && !r.International && !r.Unnormal
	return r, nil
}

func clock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// checkKeys walks the YAML tree beside the Go type it decodes into and
// reports the first key the type does not have, with its line.
func (p parser) checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // Decode reports the type error with its line
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				in := ""
				if path != "" {
					in = " in " + path
				}
				return p.errf(k.Line, "unknown key %q%s (known: %s)", k.Value, in, strings.Join(names, ", "))
			}
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			if err := p.checkKeys(n.Content[i+1], ft, sub); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := p.checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := p.checkKeys(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value); err != nil {
				return err
			}
		}
	}
	return nil
}

// valueOf returns the value node of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// keyLine is the line of key in mapping n, else the line of n.
func keyLine(n *yaml.Node, key string) int {
	if n == nil {
		return 0
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i].Line
			}
		}
	}
	return n.Line
}

func lineOr(n, fallback *yaml.Node) int {
	if n != nil {
		return n.Line
	}
	return fallback.Line
}

// item returns element i of sequence n, or an empty node.
func item(n *yaml.Node, i int) *yaml.Node {
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i]
	}
	return &yaml.Node{}
}
