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
