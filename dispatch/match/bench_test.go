package match

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch"
)

// benchDomains is the number of distinct domains subscriptions are spread over.
const benchDomains = 1000

// benchIndex builds n call subscriptions: 99% scoped to a random one of
// benchDomains domains (a third of them also to a user), 1% domain "*" (half
// of those bound to a reseller the event belongs to). An event of one domain
// then reaches about 1% of them.
func benchIndex(b *testing.B, n int) *Index {
	b.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	ix := NewIndex()
	wild := n / 100
	for i := range n {
		s := Sub{ID: fmt.Sprintf("sub-%d", i), Model: "call", Domain: fmt.Sprintf("d%d", r.IntN(benchDomains))}
		if i%3 == 0 {
			s.User = fmt.Sprintf("u%d", r.IntN(10))
		}
		if i < wild {
			s.Domain = "*"
			if i%2 == 0 {
				s.Reseller = "r1"
			}
		}
		if err := ix.Upsert(s); err != nil {
			b.Fatal(err)
		}
	}
	return ix
}

const benchBody = `{"model":"call","reseller":"r1","domain":"d42","user":"u3","orig_callid":"abc","direction":"in","term_to":"200","orig_from":"100"}`

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000, 100_000} {
		ix := benchIndex(b, n)
		model, body, err := dispatch.ParseIngest([]byte(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		// warm: the event's fields are already parsed (the usual case: one
		// parse per event is shared by every subscription and websocket).
		b.Run(fmt.Sprintf("subs=%d/warm", n), func(b *testing.B) {
			ev := &dispatch.Event{ID: "i-1", Node: "n", Model: model, Body: body}
			var dst []Hit
			b.ReportAllocs()
			for b.Loop() {
				dst = ix.Match(ev, dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "hits/op")
		})
		// cold: a fresh event every time, so the JSON parse is included.
		b.Run(fmt.Sprintf("subs=%d/cold", n), func(b *testing.B) {
			var dst []Hit
			b.ReportAllocs()
			for b.Loop() {
				ev := &dispatch.Event{ID: "i-1", Node: "n", Model: model, Body: body}
				dst = ix.Match(ev, dst[:0])
			}
			b.ReportMetric(float64(len(dst)), "hits/op")
		})
	}
}
