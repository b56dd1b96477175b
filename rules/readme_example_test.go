package rules

import (
	"os"
	"strings"
	"testing"
)

// The rule file example in the project README parses.
func TestProjectReadmeExampleParses(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "# /etc/sipwall/fraud.yaml\n")
	if !ok {
		t.Fatal("README has no fraud.yaml example")
	}
	example, _, _ := strings.Cut(after, "```")
	if _, err := Parse([]byte(example), "README fraud.yaml"); err != nil {
		t.Errorf("README example: %v", err)
	}
}

// The rule file example in this package's README parses, with the
// built-in rules before it.
func TestReadmeExampleParses(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), "## Rule file\n")
	if ok {
		_, after, ok = strings.Cut(after, "```yaml\n")
	}
	if !ok {
		t.Fatal("README has no rule file example")
	}
	example, _, _ := strings.Cut(after, "```")
	rs, err := ParseWithBuiltin([]byte(example), "README rule file")
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if len(rs.Sets) != 3 || !rs.Sets[2].Anonymous || len(rs.Sets[2].Rules) != 2 {
		t.Errorf("README example read as %d sets: %+v", len(rs.Sets), rs.Sets)
	}
}
