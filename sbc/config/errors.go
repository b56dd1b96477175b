package config

import (
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Line is the 1-based line of the offending value (or key) in the file;
	// 0 when there is no file to point at, e.g. a Config built in code.
	Line int
	// Key is the dotted path of the offending key, such as
	// "listen[1].transport". For unknown and duplicate keys it is the path
	// of the enclosing mapping and Msg names the key; empty at the top level.
	Key string
	// Msg says what is wrong.
	Msg string
}

// Error holds every problem found in one configuration, sorted by line.
// Parse, Load, Validate and RequireUpstreams return it (as error) for any
// problem with the configuration's content; use errors.As to get at it.
type Error struct {
	// File is the name the configuration was parsed under; may be empty.
	File     string
	Problems []Problem
}

// Error prints one problem per line as "file:line: key: message". Parts
// that are unknown (no file, no line, top-level key) are left out.
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		switch {
		case e.File != "" && p.Line > 0:
			b.WriteString(e.File + ":" + strconv.Itoa(p.Line) + ": ")
		case e.File != "":
			b.WriteString(e.File + ": ")
		case p.Line > 0:
			b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
		}
		if p.Key != "" {
			b.WriteString(p.Key + ": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// newError returns nil when there are no problems, so callers can return
// its result directly without tripping over a typed nil in an interface.
func newError(file string, problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	sorted := slices.Clone(problems)
	// Stable: problems on one line keep the order they were found in.
	slices.SortStableFunc(sorted, func(a, b Problem) int { return a.Line - b.Line })
	return &Error{File: file, Problems: sorted}
}

// positions maps key paths of a parsed file to lines.
type positions struct {
	file   string
	values map[string]int // key path -> line of its value
	keys   map[string]int // key path -> line of the key itself
}

func newPositions(file string) *positions {
	return &positions{file: file, values: map[string]int{}, keys: map[string]int{}}
}

func (p *positions) fileName() string {
	if p == nil {
		return ""
	}
	return p.file
}

// has reports whether path was written in the file.
func (p *positions) has(path string) bool {
	if p == nil {
		return false
	}
	_, ok := p.values[path]
	return ok
}

// line is the line of path's value or, for a key left out of the file
// (a missing required field), of the nearest enclosing value that is there.
func (p *positions) line(path string) int {
	if p == nil {
		return 0
	}
	for {
		if l, ok := p.values[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parent(path)
	}
}

// parent strips the last ".key" or "[i]" from a key path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// KeyError reports a problem found after parsing, such as a file named by
// a key that cannot be read, in the same form as Parse's errors: file,
// line of the key, key, message.
func (c *Config) KeyError(key string, err error) error {
	return newError(c.pos.fileName(), []Problem{{Line: c.pos.line(key), Key: key, Msg: err.Error()}})
}
