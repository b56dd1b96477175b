package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReadmeReference keeps the key table in README.md in step with the
// code: every key listed once, the right type, and every literal default
// equal to what Default() gives.
func TestReadmeReference(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, found := strings.Cut(string(data), "\n## Reference\n")
	if !found {
		t.Fatal("README.md has no Reference section")
	}
	rows := map[string][]string{}
	for line := range strings.SplitSeq(ref, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		key := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, dup := rows[key]; dup {
			t.Errorf("README lists %s twice", key)
		}
		rows[key] = cells
	}

	typeNames := map[reflect.Kind]string{
		reflect.String: "string", reflect.Int: "integer", reflect.Bool: "bool",
		reflect.Slice: "list", reflect.Pointer: "mapping",
	}
	for _, k := range schemaKeys(reflect.TypeFor[Config](), "") {
		cells, ok := rows[k.path]
		if !ok {
			t.Errorf("README does not list %s", k.path)
			continue
		}
		delete(rows, k.path)
		if len(cells) != 4 {
			t.Errorf("README row for %s has %d cells, want 4", k.path, len(cells))
			continue
		}
		wantType := typeNames[k.typ.Kind()]
		if k.typ == reflect.TypeFor[Duration]() {
			wantType = "duration"
		}
		if got := strings.TrimSpace(cells[1]); got != wantType {
			t.Errorf("README type of %s is %q, want %q", k.path, got, wantType)
		}
		def := strings.TrimSpace(cells[2])
		if len(def) < 2 || def[0] != '`' || def[len(def)-1] != '`' || strings.Count(def, "`") != 2 {
			continue // prose: "required", "none", ...
		}
		checkDefault(t, k.path, strings.Trim(def, "`"), defaultAt(k.path))
	}
	for key := range rows {
		t.Errorf("README lists %s, which is not a key", key)
	}
}

func checkDefault(t *testing.T, path, doc string, v reflect.Value) {
	t.Helper()
	var ok bool
	switch {
	case v.Type() == reflect.TypeFor[Duration]():
		d, err := time.ParseDuration(doc)
		ok = err == nil && Duration(d) == v.Interface().(Duration)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(doc)
		ok = err == nil && int64(n) == v.Int()
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(doc)
		ok = err == nil && b == v.Bool()
	case v.Kind() == reflect.String:
		ok = doc == v.String()
	}
	if !ok {
		t.Errorf("README default of %s is %q, but Default() has %v", path, doc, v)
	}
}

// defaultAt finds the default value of a key path; "[]" stands for a new
// list element with its own defaults.
func defaultAt(path string) reflect.Value {
	v := reflect.ValueOf(Default()).Elem()
	for part := range strings.SplitSeq(path, ".") {
		name, elem := strings.CutSuffix(part, "[]")
		_, index := fieldsOf(v.Type())
		v = v.Field(index[name])
		if v.Kind() == reflect.Pointer {
			v = reflect.New(v.Type().Elem()).Elem()
		}
		if elem {
			v = reflect.New(v.Type().Elem()).Elem()
			if d, ok := v.Addr().Interface().(defaulter); ok {
				d.applyDefaults()
			}
		}
	}
	return v
}

// The project README carries the same reference table as this package's
// README, so users see every key where they look first.
func TestProjectREADMEHasReferenceTable(t *testing.T) {
	pkg, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	top, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, ref, _ := strings.Cut(string(pkg), "\n## Reference\n")
	for _, line := range strings.Split(ref, "\n") {
		if strings.HasPrefix(line, "| `") && !strings.Contains(string(top), line) {
			t.Errorf("README.md lacks the reference row:\n%s", line)
		}
	}
}

// The TLS example in the project README is a valid configuration.
func TestProjectREADMETLSExample(t *testing.T) {
	top, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(top), "\n## TLS and WSS\n")
	if !ok {
		t.Fatal("README has no TLS and WSS section")
	}
	_, block, ok := strings.Cut(sec, "```yaml\n")
	example, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("README's TLS section has no yaml example")
	}
	c, err := Parse([]byte(example), "README TLS example")
	if err != nil {
		t.Fatalf("README TLS example: %v", err)
	}
	if len(c.TLS.ACME.Names) != 1 || c.Listen[1].Transport != TransportTLS || c.Auth.Trusted[0].CertNames[0] != "trunk.carrier.example" {
		t.Fatalf("README TLS example read as %+v", c)
	}
}
