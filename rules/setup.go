package rules

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sipwall/sipwall/dialplan"
)

//go:embed lists/*.txt
var shippedLists embed.FS

// builtinRules is the built-in rule file (rules.builtin), composed ahead
// of the operator's rule file.
//
//go:embed default.yaml
var builtinRules []byte

// BuiltinName is the file name the built-in rules are known by in
// messages; BuiltinSet the name of their rule sets' prefix.
const BuiltinName = "built-in rules"

// Builtin returns the text of the built-in rule file.
func Builtin() []byte { return bytes.Clone(builtinRules) }

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

	home string         // calling code of Country
	plan *dialplan.Plan // of Country, for engines without Options.Plan
}

// Set is one entry of rule_sets: the rules and the callers they apply to.
type Set struct {
	Name    string
	Users   []string // "*" = every authenticated user
	Trusted []string // trusted peer names ("*" = every trusted peer)
	// Anonymous: callers with neither (auth off, or the outside party of
	// a call the inside placed, naming a transfer target).
	Anonymous bool
	Rules     []*Rule
	builtin   bool
}

// Rule is one compiled rule. Thresholds compare with ">=".
type Rule struct {
	ID            string // "<set>/<rule>", the counters' key
	Name          string
	Lists         []string
	Prefixes      []string
	International bool
	Unnormal      bool
	Classes       []dialplan.Class
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
		Users     []string `yaml:"users"`
		Trusted   []string `yaml:"trusted"`
		Anonymous bool     `yaml:"anonymous"`
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
		Classes        []string `yaml:"classes"`
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
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// LoadWithBuiltin reads a rule file and composes it with the built-in
// rules (ParseWithBuiltin).
func LoadWithBuiltin(path string) (*RuleSet, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWithBuiltin(data, path)
}

func readFile(path string) ([]byte, error) {
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
	return data, nil
}

type parser struct{ name string }

func (p parser) errf(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s: %w", p.name, line, fmt.Sprintf(format, args...), ErrInvalid)
}

// Parse parses a rule file strictly: unknown keys, unknown measures,
// actions, lists and days are errors naming the key and its line.
func Parse(data []byte, name string) (*RuleSet, error) {
	return parse(data, name, false)
}

// ParseWithBuiltin parses a rule file (nil: none) and puts the built-in
// rule sets first: they match with the file's lists (a prefix the file
// removes from a shipped list is gone for them too), the file's country
// and zone. A set of the file may not take a built-in set's name.
func ParseWithBuiltin(data []byte, name string) (*RuleSet, error) {
	return parse(data, name, true)
}

// BuiltinRules is the built-in rule file alone.
func BuiltinRules() *RuleSet {
	rs, err := parse(nil, BuiltinName, true)
	if err != nil {
		panic(err) // TestBuiltin keeps it valid
	}
	return rs
}

// decodeDoc decodes one file: its top mapping node and document.
func (p parser) decodeDoc(data []byte) (*yaml.Node, fileDoc, error) {
	var doc fileDoc
	if len(data) > maxFileSize {
		return nil, doc, p.errf(0, "larger than %d bytes", maxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, doc, fmt.Errorf("%s: %v: %w", p.name, err, ErrInvalid)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return &yaml.Node{Kind: yaml.MappingNode}, doc, nil
	}
	top := root.Content[0]
	if err := p.checkKeys(top, reflect.TypeOf(doc), ""); err != nil {
		return nil, doc, err
	}
	if err := top.Decode(&doc); err != nil {
		return nil, doc, fmt.Errorf("%s: %v: %w", p.name, err, ErrInvalid)
	}
	return top, doc, nil
}

// setSource is a rule set and where it was written.
type setSource struct {
	fs      fileSet
	node    *yaml.Node
	p       parser
	builtin bool
}

func parse(data []byte, name string, builtin bool) (*RuleSet, error) {
	p := parser{name: name}
	top, doc, err := p.decodeDoc(data)
	if err != nil {
		return nil, err
	}
	rs := &RuleSet{Name: name, Country: strings.ToUpper(doc.Country), Zone: time.UTC, Lists: map[string][]string{}}
	plan, err := dialplan.New(dialplan.Config{Country: rs.Country})
	if err != nil {
		return nil, p.errf(keyLine(top, "country"), "country: unknown country %q (known: %s)", doc.Country, strings.Join(dialplan.Countries(), ", "))
	}
	rs.plan, rs.home = plan, plan.CountryCode()
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

	var sources []setSource
	if builtin {
		bp := parser{name: BuiltinName}
		btop, bdoc, err := bp.decodeDoc(builtinRules)
		if err != nil {
			return nil, err
		}
		bsets := valueOf(btop, "rule_sets")
		for i, fs := range bdoc.RuleSets {
			sources = append(sources, setSource{fs: fs, node: item(bsets, i), p: bp, builtin: true})
		}
	}
	setsNode := valueOf(top, "rule_sets")
	for i, fs := range doc.RuleSets {
		sources = append(sources, setSource{fs: fs, node: item(setsNode, i), p: p})
	}
	setNames := map[string]bool{}
	total := 0
	for i, src := range sources {
		fs, sn, p := src.fs, src.node, src.p
		if fs.Name == "" {
			return nil, p.errf(sn.Line, "rule_sets[%d]: name is required", i)
		}
		if setNames[fs.Name] {
			what := ""
			if builtin {
				what = " (the built-in rules use it: rename yours, or set rules.builtin off)"
			}
			return nil, p.errf(keyLine(sn, "name"), "rule_sets[%d]: duplicate name %q%s", i, fs.Name, what)
		}
		setNames[fs.Name] = true
		if len(fs.AppliesTo.Users) == 0 && len(fs.AppliesTo.Trusted) == 0 && !fs.AppliesTo.Anonymous {
			return nil, p.errf(keyLine(sn, "applies_to"), "rule set %q: applies_to names no users, no trusted peers and not anonymous", fs.Name)
		}
		set := Set{Name: fs.Name, Users: fs.AppliesTo.Users, Trusted: fs.AppliesTo.Trusted, Anonymous: fs.AppliesTo.Anonymous, builtin: src.builtin}
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
	for _, c := range fr.Match.Classes {
		if !slices.Contains(dialplan.Classes, dialplan.Class(c)) {
			names := make([]string, len(dialplan.Classes))
			for i, k := range dialplan.Classes {
				names[i] = string(k)
			}
			return nil, p.errf(lineOr(valueOf(valueOf(n, "match"), "classes"), n), "%s: match.classes: %q is not one of %s", where, c, strings.Join(names, ", "))
		}
		r.Classes = append(r.Classes, dialplan.Class(c))
	}
	r.matchAll = len(r.match) == 0 && !r.International && !r.Unnormal && len(r.Classes) == 0
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
