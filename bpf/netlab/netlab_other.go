//go:build !linux

package netlab

import (
	"errors"
	"testing"
)

// Skip skips the test: network namespaces are Linux only.
func Skip(t testing.TB) {
	t.Helper()
	t.Skip("netlab: network namespaces and veth pairs need Linux")
}

// New skips the test: network namespaces are Linux only.
func New(t testing.TB) *Lab {
	t.Helper()
	Skip(t)
	return nil
}

// Do fails: network namespaces are Linux only.
func (l *Lab) Do(fn func() error) error {
	return errors.New("netlab: network namespaces need Linux")
}
