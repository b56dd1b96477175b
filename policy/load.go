package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/util"
	"gopkg.in/yaml.v3"
)

// Bounds on what a policy directory may hold: a reload must not be able to
// eat the process.
const (
	maxFiles    = 1000
	maxFileSize = 8 << 20
	maxTotal    = 64 << 20
	testTimeout = 10 * time.Second
)

// removedBuiltins are the built-in functions a policy may not call: network
// and other I/O, process introspection, randomness. A decision depends on
// the input document and the bundle's data only.
var removedBuiltins = map[string]bool{
	"http.send":          true,
	"net.lookup_ip_addr": true,
	"opa.runtime":        true,
	"trace":              true,
	"rand.intn":          true,
	"uuid.rfc4122":       true,
}

// Capabilities returns the OPA capabilities sipwall compiles policies
// with: this version's built-ins minus removedBuiltins, and no network
// access for schema references.
func Capabilities() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := c.Builtins[:0:0]
	for _, b := range c.Builtins {
		if !removedBuiltins[b.Name] {
			kept = append(kept, b)
		}
	}
	c.Builtins = kept
	c.AllowNet = []string{}
	return c
}

// bundleFiles is the content of a policy directory.
type bundleFiles struct {
	modules map[string]string // path → Rego source
	data    map[string][]byte // path → data.json / data.yaml
	version string            // sha256 over names and contents
}

func isData(name string) bool {
	switch path.Base(name) {
	case "data.json", "data.yaml", "data.yml":
		return true
	}
	return false
}

func skipDir(name string) bool {
	b := path.Base(name)
	return name != "." && (strings.HasPrefix(b, ".") || strings.HasPrefix(b, "_"))
}

// walkFiles calls fn for every file under fsys, skipping hidden and
// "_" directories, as the loader and the change watcher both must.
func walkFiles(fsys fs.FS, fn func(p string, d fs.DirEntry) error) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(p) {
				return fs.SkipDir
			}
			return nil
		}
		return fn(p, d)
	})
}

// readBundle reads every .rego and data file under fsys.
func readBundle(fsys fs.FS) (*bundleFiles, error) {
	b := &bundleFiles{modules: map[string]string{}, data: map[string][]byte{}}
	var names []string
	total := 0
	err := walkFiles(fsys, func(p string, _ fs.DirEntry) error {
		if !strings.HasSuffix(p, ".rego") && !isData(p) {
			return nil
		}
		if len(names) == maxFiles {
			return fmt.Errorf("more than %d policy files", maxFiles)
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		if len(src) > maxFileSize {
			return fmt.Errorf("%s: larger than %d bytes", p, maxFileSize)
		}
		if total += len(src); total > maxTotal {
			return fmt.Errorf("policy files larger than %d bytes in all", maxTotal)
		}
		names = append(names, p)
		if isData(p) {
			b.data[p] = src
		} else {
			b.modules[p] = string(src)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(b.modules) == 0 {
		return nil, ErrNoPolicy
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		src := []byte(b.modules[n])
		if isData(n) {
			src = b.data[n]
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(src))
		h.Write(src)
	}
	b.version = hex.EncodeToString(h.Sum(nil))[:16]
	return b, nil
}

// dataDoc merges the data files into one document: data.json in directory
// a/b lands under data.a.b, as with OPA's loader.
func (b *bundleFiles) dataDoc() (map[string]any, error) {
	root := map[string]any{}
	names := make([]string, 0, len(b.data))
	for n := range b.data {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		src := b.data[n]
		var v any
		if strings.HasSuffix(n, ".json") {
			if err := util.UnmarshalJSON(src, &v); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		} else {
			var y any
			if err := yaml.Unmarshal(src, &y); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			// Through JSON so that numbers and maps have the types OPA expects.
			js, err := json.Marshal(y)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			if err := util.UnmarshalJSON(js, &v); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: top level is not an object", n)
		}
		dst := root
		if dir := path.Dir(n); dir != "." {
			for _, k := range strings.Split(dir, "/") {
				next, ok := dst[k].(map[string]any)
				if !ok {
					if _, exists := dst[k]; exists {
						return nil, fmt.Errorf("%s: conflicts with data at %s", n, k)
					}
					next = map[string]any{}
					dst[k] = next
				}
				dst = next
			}
		}
		if err := merge(dst, obj, n); err != nil {
			return nil, err
		}
	}
	return root, nil
}

func merge(dst, src map[string]any, file string) error {
	for k, v := range src {
		old, exists := dst[k]
		if !exists {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s: key %q defined twice", file, k)
		}
		if err := merge(om, nm, file); err != nil {
			return err
		}
	}
	return nil
}

// compiled is one loaded bundle, ready to evaluate.
type compiled struct {
	pq      rego.PreparedEvalQuery
	version string
	loaded  time.Time
	tests   int
	// fingerprint is the names, sizes and mtimes of the files, for Run.
	fingerprint string
}

// TestResult is the outcome of one Rego test of a bundle.
type TestResult struct {
	Name  string // package.rule
	Pass  bool
	Error string // failure detail, empty when passed
}

// parsed is a bundle read and parsed, not yet compiled.
type parsed struct {
	files   *bundleFiles
	modules map[string]*ast.Module
	store   storage.Store
}

func parseBundle(fsys fs.FS) (*parsed, error) {
	files, err := readBundle(fsys)
	if err != nil {
		return nil, err
	}
	caps := Capabilities()
	mods := make(map[string]*ast.Module, len(files.modules))
	for name, src := range files.modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			return nil, err
		}
		mods[name] = m
	}
	doc, err := files.dataDoc()
	if err != nil {
		return nil, err
	}
	return &parsed{files: files, modules: mods, store: inmem.NewFromObjectWithOpts(doc, inmem.OptRoundTripOnWrite(false))}, nil
}

func newCompiler() *ast.Compiler {
	return ast.NewCompiler().
		WithCapabilities(Capabilities()).
		WithEnablePrintStatements(false).
		WithDefaultRegoVersion(ast.RegoV1).
		WithStrict(false)
}

// runTests runs the bundle's test_ rules (in *_test.rego or anywhere else)
// with the same restricted capabilities and strict built-in errors.
func (p *parsed) runTests(ctx context.Context) ([]TestResult, error) {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	ch, err := tester.NewRunner().
		SetCompiler(newCompiler()).
		SetStore(p.store).
		SetModules(p.modules).
		RaiseBuiltinErrors(true).
		SetTimeout(testTimeout).
		SetDefaultRegoVersion(ast.RegoV1).
		RunTests(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []TestResult
	for r := range ch {
		tr := TestResult{Name: strings.TrimPrefix(r.Package, "data.") + "." + r.Name, Pass: r.Pass()}
		switch {
		case r.Error != nil:
			tr.Error = r.Error.Error()
		case r.Fail:
			tr.Error = "failed"
			if r.FailedAt != nil {
				tr.Error = "failed at " + r.FailedAt.Location.String() + ": " + r.FailedAt.String()
			}
		}
		out = append(out, tr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TestDir runs the Rego tests of the policy directory dir ("" = the
// embedded default bundle). It does not evaluate or prepare the decision
// query.
func TestDir(ctx context.Context, dir string) ([]TestResult, error) {
	fsys, err := bundleFS(dir)
	if err != nil {
		return nil, err
	}
	p, err := parseBundle(fsys)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", dirName(dir), err)
	}
	return p.runTests(ctx)
}

// build reads, compiles, tests and prepares the bundle in fsys.
func build(ctx context.Context, fsys fs.FS, query string, now time.Time) (*compiled, error) {
	p, err := parseBundle(fsys)
	if err != nil {
		return nil, err
	}
	c := newCompiler()
	if c.Compile(p.modules); c.Failed() {
		return nil, c.Errors
	}
	results, err := p.runTests(ctx)
	if err != nil {
		return nil, fmt.Errorf("tests: %w", err)
	}
	var failed []string
	for _, r := range results {
		if !r.Pass {
			failed = append(failed, r.Name+": "+r.Error)
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrTestsFailed, strings.Join(failed, "; "))
	}
	pq, err := rego.New(
		rego.Query(query),
		rego.Compiler(c),
		rego.Store(p.store),
		rego.StrictBuiltinErrors(true),
		rego.Capabilities(Capabilities()),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, err
	}
	return &compiled{pq: pq, version: p.files.version, loaded: now, tests: len(results)}, nil
}

// ErrNoPolicy: the policy directory holds no .rego file.
var ErrNoPolicy = errors.New("no .rego file")

// ErrTestsFailed: a Rego test of the bundle failed, so it was refused.
var ErrTestsFailed = errors.New("policy tests failed")
