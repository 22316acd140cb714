package dispatch

import (
	"fmt"
	"testing"
)

// benchAuditlogEvent is a ~300-byte auditlog event scoped by target_domain.
func benchAuditlogEvent() []byte {
	return []byte(`{"model":"auditlog","reseller":"r1","domain":"actor.example.com","user":"admin",` +
		`"target_domain":"pbx.example.com","target_user":"100","action":"update","object":"subscriber",` +
		`"time":"2025-01-02 03:04:05","changes":{"name-first-name":["Old","New"],"status":[1,2]},"remote_addr":"10.0.0.9"}`)
}

// benchSubscriberEvent is a subscriber event as presence is derived from.
func benchSubscriberEvent() []byte {
	return []byte(`{"model":"subscriber","reseller":"r1","domain":"pbx.example.com","user":"100",` +
		`"name-first-name":"Zo\u00eb","name-last-name":"Smith","email":"zoe@example.com","user-presence-status":"open",` +
		`"status-message":"In a meeting","site":"HQ","department":"Sales","dial-plan":"default","vmail-enabled":"yes",` +
		`"scope":"Basic User","time-zone":"US/Eastern"}`)
}

// benchStored is obj as stored in the event log: ParseIngest's output.
func benchStored(b *testing.B, obj []byte) (string, []byte) {
	model, body, err := ParseIngest(obj)
	if err != nil {
		b.Fatal(err)
	}
	return model, body
}

// scopeBenchEvents are the events BenchmarkScope reads.
func scopeBenchEvents() []struct {
	name string
	obj  []byte
} {
	return []struct {
		name string
		obj  []byte
	}{
		{"call", benchCallEvent()},
		{"auditlog", benchAuditlogEvent()},
		{"subscriber", benchSubscriberEvent()},
		{"large", benchLargeEvent()},
	}
}

// BenchmarkScopeReference is the original Scope (decode the body into a
// map, then scopeOf) on the same events, for a before/after comparison under
// the same machine load.
func BenchmarkScopeReference(b *testing.B) {
	for _, c := range scopeBenchEvents() {
		model, body := benchStored(b, c.obj)
		b.Run(fmt.Sprintf("%s-%dB", c.name, len(body)), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if s := scopeReference(model, body); s.Domain == nil {
					b.Fatal("no domain")
				}
			}
		})
	}
}

// BenchmarkScope measures the first (uncached) Scope call on a stored event,
// as the delivery engine pays it once per event read.
func BenchmarkScope(b *testing.B) {
	for _, c := range scopeBenchEvents() {
		model, body := benchStored(b, c.obj)
		b.Run(fmt.Sprintf("%s-%dB", c.name, len(body)), func(b *testing.B) {
			ev := &Event{ID: "i-1", Node: "n1", Seq: 1, IngestMs: 1, Model: model, Body: body}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				resetEventCache(ev)
				if s := ev.Scope(); s.Domain == nil {
					b.Fatal("no domain")
				}
			}
		})
	}
}

// BenchmarkDerivedReference is the original Derived on the same events.
func BenchmarkDerivedReference(b *testing.B) {
	benchmarkDerived(b, derivedReference)
}

// BenchmarkDerived measures the derived forms match.Derive asks for: presence
// of a subscriber event (kept members), auditlog_lite of an auditlog event
// and call_origid of a call event (all members).
func BenchmarkDerived(b *testing.B) {
	benchmarkDerived(b, (*Event).Derived)
}

func benchmarkDerived(b *testing.B, derive func(*Event, string, []string) (*Event, error)) {
	presence := []string{FieldUser, FieldDomain, "name-first-name", "name-last-name",
		"user-presence-status", "status-message", "site", "department"}
	for _, c := range []struct {
		name  string
		obj   []byte
		model string
		keep  []string
	}{
		{"presence", benchSubscriberEvent(), ModelPresence, presence},
		{"auditlog_lite", benchAuditlogEvent(), ModelAuditlogLite, nil},
		{"call_origid", benchCallEvent(), ModelCallOrigID, nil},
		{"large", benchLargeEvent(), "cdr_x", nil},
	} {
		model, body := benchStored(b, c.obj)
		b.Run(fmt.Sprintf("%s-%dB", c.name, len(body)), func(b *testing.B) {
			ev := &Event{ID: "i-1", Node: "n1", Seq: 1, IngestMs: 1, Model: model, Body: body}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := derive(ev, c.model, c.keep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// resetEventCache forgets what Scope and Fields cached, for benchmarks and
// allocation counts of a first call.
func resetEventCache(ev *Event) {
	ev.parsed.Store(nil)
	ev.scope.Store(nil)
}
