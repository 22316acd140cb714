package hub

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkFanOut measures the reader's cost per event with 1,000
// connections, each filtering on one of 100 domains (an event reaches 10),
// the shape of integration/bench/ws. Reported per event.
func BenchmarkFanOut(b *testing.B) {
	for _, conns := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			l := newMemLog("inc1")
			h := New(Options{Logger: testLogger(), QueueMax: 1 << 30})
			h.AddSource("n1", l)
			subs := make([]*Sub, conns)
			for i := range subs {
				subs[i] = mustSubscribe(b, h, SubOptions{Scope: super, Filters: filters(b, "domain", fmt.Sprintf("d%03d.bench.test", i%100))})
			}
			src := h.sources["n1"]
			const chunk = 256
			bodies := make([]string, chunk)
			for i := range bodies {
				bodies[i] = fmt.Sprintf(`{"model":"call","domain":"d%03d.bench.test","user":"u1","bench-seq":%d,"bench-ts":%d,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`, i%100, i, time.Now().UnixNano())
			}
			b.ResetTimer()
			for done := 0; done < b.N; done += chunk {
				b.StopTimer()
				first := l.append(bodies...)
				recs, _ := l.Read(first, chunk)
				for _, s := range subs { // keep queues from growing
					s.mu.Lock()
					s.queue = ring{}
					s.mu.Unlock()
				}
				b.StartTimer()
				h.fanOut(src, recs)
			}
		})
	}
}
