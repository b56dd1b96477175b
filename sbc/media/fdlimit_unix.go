//go:build unix

package media

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// RaiseDescriptorLimit raises the process's descriptor limit toward need:
// the soft limit to the hard one, and, where the process may (root, or
// CAP_SYS_RESOURCE), both beyond the hard limit up to need, within the
// kernel's fs.nr_open. The relay takes four descriptors per stream. It
// returns the soft limit in force afterwards.
func RaiseDescriptorLimit(need uint64) (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if need > l.Max {
		ceiling := need
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n < ceiling {
				ceiling = n
			}
		}
		if ceiling > l.Max {
			up := syscall.Rlimit{Cur: ceiling, Max: ceiling}
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up); err == nil {
				return ceiling, nil
			}
		}
	}
	if l.Cur < l.Max {
		raised := syscall.Rlimit{Cur: l.Max, Max: l.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return l.Cur, err
		}
		return l.Max, nil
	}
	return l.Cur, nil
}
