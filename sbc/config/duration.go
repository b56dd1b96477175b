package config

import (
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration read from strings such as "300ms" or "2h".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d the way time.Duration does, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// durationHint is appended to every duration error so the fix is obvious.
const durationHint = `(use e.g. "300ms", "10s", "2h")`

// UnmarshalYAML reads a Go duration string. Negative durations are
// rejected: no setting of sipwall means anything with one. A null value
// leaves d unchanged, so the default stays in place.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration %s, got %s", durationHint, describe(n))
	}
	if isNull(n) {
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		// A bare number is the most common mistake; say what is missing.
		if _, numErr := strconv.ParseFloat(n.Value, 64); numErr == nil {
			return fmt.Errorf("%s is not a duration: it needs a unit %s", quote(n.Value), durationHint)
		}
		return fmt.Errorf("%s is not a duration %s", quote(n.Value), durationHint)
	}
	if v < 0 {
		return fmt.Errorf("%s is negative; durations must be 0 or more", quote(n.Value))
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes d in the form UnmarshalYAML reads back.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
