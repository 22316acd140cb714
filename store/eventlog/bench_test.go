package eventlog

import (
	"context"
	"fmt"
	"testing"
)

// benchParallelism multiplies GOMAXPROCS to get the number of concurrent
// appenders in BenchmarkAppend (group commit needs concurrent callers).
const benchParallelism = 32

// benchBody is a typical small event (bytes).
const benchBody = `{"model":"call","domain":"example.com","user":"1001","orig_callid":"abc-123","term_callid":"def-456","call_status":"ringing","reseller":"acme"}`

// BenchmarkAppend measures fsynced Append throughput with many concurrent
// callers, for calls of 1 and 100 events. ns/op is per Append call.
func BenchmarkAppend(b *testing.B) {
	for _, perCall := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", perCall), func(b *testing.B) {
			l := openTest(b, Options{}, hooks{})
			entries := make([]Entry, perCall)
			for i := range entries {
				entries[i] = Entry{Model: "call", Body: []byte(benchBody)}
			}
			b.SetParallelism(benchParallelism)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := l.Append(context.Background(), entries); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			s := l.Stats()
			b.ReportMetric(float64(s.LastSeq)/b.Elapsed().Seconds(), "events/s")
			if s.Commits > 0 {
				b.ReportMetric(float64(s.LastSeq)/float64(s.Commits), "events/commit")
			}
		})
	}
}
