package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

// The JSON Schema of the input (docs/policy-input.schema.json) names
// exactly the keys Input has, at the top and in destination.
func TestSchemaMatchesInput(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "policy-input.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	keysOf := func(v any) []string {
		raw, _ := json.Marshal(v)
		var m map[string]json.RawMessage
		_ = json.Unmarshal(raw, &m)
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	sorted := func(m any) []string {
		var ks []string
		for _, k := range reflect.ValueOf(m).MapKeys() {
			ks = append(ks, k.String())
		}
		sort.Strings(ks)
		return ks
	}
	if got, want := sorted(schema.Properties), keysOf(Input{}); !reflect.DeepEqual(got, want) {
		t.Errorf("schema properties %v, Input has %v", got, want)
	}
	if got, want := sorted(schema.Properties["destination"].Properties), keysOf(Destination{}); !reflect.DeepEqual(got, want) {
		t.Errorf("schema destination %v, Destination has %v", got, want)
	}
}
