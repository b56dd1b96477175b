//go:build unix

package procs

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process used so far, user and system,
// all threads (getrusage(2), RUSAGE_SELF).
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
