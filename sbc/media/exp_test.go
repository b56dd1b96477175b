package media

import (
	"fmt"
	"testing"
	"time"
)

func TestExpWindow(t *testing.T) {
	for _, streams := range []int{100, 1000} {
		for _, w := range []int{4, 16, 64, 256, 1024} {
			t.Run(fmt.Sprint(streams, "/", w), func(t *testing.T) {
				m := loadManager(t)
				l := newLoad(t, m, streams, 300000, w)
				r := l.run(300000, 10*time.Second)
				t.Logf("s=%d w=%d: %d/%d %.0f pkts/s p50 %s p99 %s", streams, w, r.Received, r.Sent, r.pps(), r.P50, r.P99)
			})
		}
	}
}
