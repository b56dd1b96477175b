//go:build !unix

package procs

import "time"

// processCPU is not read here: the controller does not run.
func processCPU() (time.Duration, bool) { return 0, false }
