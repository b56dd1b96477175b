package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the configuration file at path. See Parse.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a YAML configuration. filename is only used
// in error messages.
//
// Decoding is strict: unknown keys, duplicate keys, values of the wrong type
// and invalid values are all errors. Keys left out, or given an empty
// (null) value, take their defaults; an empty document is all defaults.
// Upstreams may be empty here; see RequireUpstreams.
//
// Every problem found is reported, not just the first: the error is an
// *Error listing them by line, each with its key path.
func Parse(data []byte, filename string) (*Config, error) {
	c := Default()
	c.pos = newPositions(filename)

	doc, problems := parseDocument(data)
	if len(problems) > 0 {
		return nil, newError(filename, problems)
	}

	d := &decoder{pos: c.pos, bad: map[string]bool{}}
	if doc != nil && len(doc.Content) > 0 {
		top := doc.Content[0]
		c.pos.values[""] = top.Line
		switch {
		case isNull(top):
			// A document holding only "~" or "---" is as good as empty.
		case top.Kind != yaml.MappingNode:
			d.badValue(top.Line, "", "want a mapping of keys at the top level, got %s", describe(top))
		default:
			d.mapping(top, "", reflect.ValueOf(c).Elem())
		}
	}

	problems = d.problems
	for _, p := range c.problems() {
		// A value that failed to decode kept its default; checking that
		// default would only add a confusing second message.
		if !d.covered(p.Key) {
			problems = append(problems, p)
		}
	}
	if err := newError(filename, problems); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlErrLine splits yaml.v3 syntax errors ("yaml: line 3: ...") into the
// line and the message.
var yamlErrLine = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to
// its scanner). yaml.v3 prints the line of a parser error 0-based and that
// of a scanner error 1-based, and leaves the line out when it would print
// 0; knowing which is which gets every syntax error onto the right line.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// yamlUnknownAnchor is the one syntax error yaml.v3 reports with no line
// at all; the alias it names is searched for instead.
var yamlUnknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

func syntaxProblem(err error, data []byte) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserProblems[msg] {
			line++
		}
	} else if m := yamlUnknownAnchor.FindStringSubmatch(msg); m != nil {
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	} else {
		line = 1 // yaml.v3 omits "line 1"
	}
	return Problem{Line: line, Msg: "invalid YAML: " + msg}
}

// parseDocument parses data into a node tree. It returns a nil document
// for empty input (or input holding only comments).
func parseDocument(data []byte) (doc *yaml.Node, problems []Problem) {
	// yaml.v3 is third-party code fed untrusted bytes; should it panic on
	// some input, a bad config must still be an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			doc, problems = nil, []Problem{{Msg: fmt.Sprintf("invalid YAML: %v", r)}}
		}
	}()

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, []Problem{syntaxProblem(err, data)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, []Problem{syntaxProblem(err, data)}
	default:
		return nil, []Problem{{Line: next.Line, Msg: "more than one YAML document; the configuration must be a single document"}}
	}
	return &first, nil
}

// decoder walks a yaml.Node tree into the Config struct, using the yaml
// struct tags for key names. Walking the tree ourselves, instead of
// yaml.Decoder.KnownFields, is what lets every problem carry its key path
// and lets decoding go on after the first problem.
type decoder struct {
	pos      *positions
	problems []Problem
	// bad holds the key paths whose value could not be decoded.
	bad map[string]bool
}

func (d *decoder) fail(line int, key, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) badValue(line int, key, format string, args ...any) {
	d.bad[key] = true
	d.fail(line, key, format, args...)
}

// covered reports whether key, or a mapping or list enclosing it, already
// has a decoding problem.
func (d *decoder) covered(key string) bool {
	for {
		if d.bad[key] {
			return true
		}
		if key == "" {
			return false
		}
		key = parent(key)
	}
}

// defaulter is implemented by list element types that have defaults of
// their own; each fresh element gets them before its mapping is decoded.
type defaulter interface{ applyDefaults() }

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// value decodes n into v and records where it was. The line recorded and
// reported is that of n itself, so a bad aliased value is reported where
// the alias is used, under the key path it is used at.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	d.pos.values[path] = n.Line
	d.into(resolve(n), n.Line, path, v)
}

func (d *decoder) into(n *yaml.Node, line int, path string, v reflect.Value) {
	if n == nil || isNull(n) {
		return // keep the default
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.badValue(line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.badValue(line, path, "want a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.badValue(line, path, "want an integer, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.badValue(line, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			d.badValue(line, path, "want a mapping, got %s", describe(n))
			return
		}
		d.mapping(n, path, v)
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.into(n, line, path, elem.Elem())
		v.Set(elem)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.badValue(line, path, "want a list, got %s", describe(n))
			return
		}
		// A list in the file replaces the default list, never extends it.
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ev := s.Index(i)
			if def, ok := ev.Addr().Interface().(defaulter); ok {
				def.applyDefaults()
			}
			d.value(item, path+"["+strconv.Itoa(i)+"]", ev)
		}
		v.Set(s)
	default:
		// Only reachable if a field of a type this walker does not know is
		// added to Config; the tests decode every field, so they catch it.
		d.badValue(line, path, "cannot decode into %s", v.Type())
	}
}

// mapping decodes the keys of a YAML mapping into the struct v.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	names, index := fieldsOf(v.Type())
	m := mapper{d: d, path: path, v: v, names: names, index: index,
		set: map[string]bool{}, merged: map[*yaml.Node]bool{n: true}}
	m.pairs(n)
}

// mapper is the state of decoding one mapping, including the mappings
// merged into it with "<<".
type mapper struct {
	d     *decoder
	path  string
	v     reflect.Value
	names []string
	index map[string]int
	// set holds the keys decoded so far: keys written in the mapping win
	// over merged ones, and earlier merges over later ones.
	set map[string]bool
	// merged holds the mappings already merged in. Merging one twice adds
	// nothing, and skipping it stops both merge cycles and the exponential
	// work of merges that merge the same mapping many times.
	merged map[*yaml.Node]bool
}

func (m *mapper) pairs(n *yaml.Node) {
	d := m.d
	firstLine := map[string]int{} // duplicate detection within this node
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kr := resolve(k)
		if kr == nil || kr.Kind != yaml.ScalarNode {
			d.fail(k.Line, m.path, "keys must be plain strings, got %s", describe(kr))
			continue
		}
		name := kr.Value
		if first, dup := firstLine[name]; dup {
			d.fail(k.Line, m.path, "duplicate key %s (first set on line %d)", quote(name), first)
			continue
		}
		firstLine[name] = k.Line
		if name == "<<" && kr.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if m.set[name] {
			continue
		}
		idx, known := m.index[name]
		if !known {
			d.fail(k.Line, m.path, "unknown key %s%s", quote(name), suggestion(name, m.names))
			continue
		}
		m.set[name] = true
		child := name
		if m.path != "" {
			child = m.path + "." + name
		}
		d.pos.keys[child] = k.Line
		d.value(val, child, m.v.Field(idx))
	}

	// Merges apply after the keys written here, so those take precedence.
	for _, src := range merges {
		r := resolve(src)
		var sources []*yaml.Node
		switch {
		case r != nil && r.Kind == yaml.MappingNode:
			sources = []*yaml.Node{r}
		case r != nil && r.Kind == yaml.SequenceNode:
			for _, item := range r.Content {
				sources = append(sources, resolve(item))
			}
		}
		if len(sources) == 0 {
			d.fail(src.Line, m.path, "a merge (<<) needs a mapping or a list of mappings, got %s", describe(r))
			continue
		}
		for _, s := range sources {
			if s == nil || s.Kind != yaml.MappingNode {
				d.fail(src.Line, m.path, "a merge (<<) needs a mapping or a list of mappings, got %s", describe(s))
				continue
			}
			if m.merged[s] {
				continue
			}
			m.merged[s] = true
			m.pairs(s)
		}
	}
}

// fieldsOf lists the yaml key names of struct type t, in field order, and
// maps each to its field index.
func fieldsOf(t reflect.Type) ([]string, map[string]int) {
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

// resolve follows aliases to the node they name. The bound is only a guard:
// the parser never makes an alias point at another alias.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i == 16 {
			return nil
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode:
		return quote(n.Value)
	}
	return "an invalid node"
}

// quote quotes s for a message, cut short so that a stray multi-kilobyte
// value does not swamp the error.
func quote(s string) string {
	const max = 60
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// suggestion returns ` (did you mean "x"?)` for the known key closest to an
// unknown one, or the list of valid keys when none is close.
func suggestion(key string, names []string) string {
	if best := closest(key, names); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (valid keys: " + strings.Join(names, ", ") + ")"
}

func closest(key string, names []string) string {
	if len(key) > 64 {
		return "" // not a typo of any key; skip the quadratic distance
	}
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	// Same key modulo case and separators: "maxDialogs", "max-dialogs".
	for _, n := range names {
		if norm(n) == norm(key) {
			return n
		}
	}
	best, bestDist := "", 3 // more than two edits away is not a typo
	if len(key) <= 4 {
		bestDist = 2 // short keys: one edit, or everything would match
	}
	for _, n := range names {
		if dist := editDistance(key, n); dist < bestDist {
			best, bestDist = n, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
