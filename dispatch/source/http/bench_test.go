package httpsource

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch"
)

// benchEvent is a typical small PBX event (~300 bytes).
func benchEvent(i int) string {
	return fmt.Sprintf(`{"model":"call","reseller":"r1","domain":"example.com","user":["100","101"],`+
		`"orig_callid":"a8f1c2d3e4-%d@10.0.0.1","term_callid":"b7e6d5c4-%d","orig_from_uri":"sip:100@example.com",`+
		`"orig_to_uri":"sip:101@example.com","call_state":"ringing","time_start":"2025-01-02 03:04:05",`+
		`"duration":%d,"remove":"no"}`, i, i, i)
}

func benchBody(n int) []byte {
	if n == 1 {
		return []byte(benchEvent(0))
	}
	parts := make([]string, n)
	for i := range parts {
		parts[i] = benchEvent(i)
	}
	return []byte("[" + strings.Join(parts, ",") + "]")
}

// reusableBody is a request body that can be rewound without allocating.
type reusableBody struct{ bytes.Reader }

func (*reusableBody) Close() error { return nil }

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// BenchmarkIngest measures the handler alone (ServeHTTP with a fake
// Appender that returns at once): body read, split, ParseIngest of every
// event, the single Append call and the 202 body.
func BenchmarkIngest(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			body := benchBody(n)
			h := New(Options{Log: &fakeLog{}, Authorize: AllowAll, Logger: slog.New(slog.DiscardHandler)})
			req := httptest.NewRequest(http.MethodPost, "/v1/events", nil)
			req.Header.Set("Content-Type", "application/json")
			req.ContentLength = int64(len(body))
			rb := &reusableBody{}
			req.Body = rb
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rb.Reset(body)
				h.ServeHTTP(w, req)
				if w.code != http.StatusAccepted {
					b.Fatalf("status %d", w.code)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkParseIngestOnly is the floor BenchmarkIngest is compared with:
// dispatch.ParseIngest on the same events, nothing else.
func BenchmarkParseIngestOnly(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			events := make([][]byte, n)
			for i := range events {
				events[i] = []byte(benchEvent(i))
			}
			b.ReportAllocs()
			for b.Loop() {
				for _, e := range events {
					if _, _, err := dispatch.ParseIngest(e); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkIngestHTTP is end to end: parallel clients over loopback HTTP to
// a real event log (fsync per group commit) in a temporary directory.
func BenchmarkIngestHTTP(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			body := benchBody(n)
			l := newLog(b)
			url := newServer(b, Options{Log: l})
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := client.Post(url, "application/json", bytes.NewReader(body))
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					_ = res.Body.Close()
					if res.StatusCode != http.StatusAccepted {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
			s := l.Stats()
			b.ReportMetric(float64(s.Appends)/float64(max(s.Commits, 1)), "requests/commit")
		})
	}
}
