package ami

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// TestDerivedModelsOfSourceEvents runs the transcript through a client
// into a real event log and matches what the log holds as the engine does:
// source events reach derived models (call → call_origid) like ingested
// ones, and the models they map to directly.
func TestDerivedModelsOfSourceEvents(t *testing.T) {
	log, err := eventlog.Open(eventlog.Options{Path: filepath.Join(t.TempDir(), "events.db"), Retention: time.Hour, RetentionBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	srv := newFakeAMI(t, []script{{loginOK: true, body: transcript(t)}})
	c := New(Options{Addr: srv.ln.Addr().String(), Username: "u", Secret: "p", Log: log,
		Mapping: Mapping{Domain: "pbx.example.net"}, Logger: slog.New(slog.DiscardHandler),
		Backoff: source.Backoff{Min: time.Second, Max: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	waitFor(t, "the events in the log", func() bool { return log.LastSeq() >= uint64(len(want)) })
	cancel()
	<-done

	ix := match.NewIndex()
	subs := []match.Sub{
		{ID: "orig", Model: dispatch.ModelCallOrigID, Domain: "example.com", Reseller: "*", User: "*"},
		{ID: "calls", Model: "call", Domain: "example.com", Reseller: "*", User: "*"},
		{ID: "cdr", Model: "cdr", Domain: "example.com", Reseller: "*", User: "*"},
		{ID: "agent", Model: "agent", Domain: "pbx.example.net", Reseller: "*", User: "2002"},
		{ID: "presence", Model: "presence", Domain: "*", Reseller: "*", User: "*"},
		{ID: "vm", Model: "voicemail", Domain: "pbx.example.net", Reseller: "*", User: "2002"},
	}
	for _, s := range subs {
		if err := ix.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := log.Read(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	collapse := match.NewOrigIDCollapser(100)
	got := map[string][]string{}
	for _, r := range recs {
		ev := &dispatch.Event{ID: dispatch.EventID(log.Incarnation(), r.Seq), Node: "n1", Seq: r.Seq, IngestMs: r.IngestMs, Model: r.Model, Body: r.Body}
		for _, h := range ix.Match(ev, nil) {
			out := ev
			if h.Derived != "" {
				if out, err = match.Derive(ev, h.Derived); err != nil {
					t.Fatal(err)
				}
				if h.Derived == dispatch.ModelCallOrigID && !collapse.Pass(ev) {
					continue
				}
			}
			f, err := out.Fields()
			if err != nil {
				t.Fatal(err)
			}
			got[h.SubID] = append(got[h.SubID], fmt.Sprintf("%s/%v", out.Model, f["event"]))
		}
	}
	wantHits := map[string]string{
		// call_origid: the first event and the removal (the others
		// change no orig_* field).
		"orig":     "[call_origid/start call_origid/end]",
		"calls":    "[call/start call/update call/answer call/bridge call/end]",
		"cdr":      "[cdr/<nil>]",
		"agent":    "[agent/queuememberpause]",
		"presence": "[presence/<nil> presence/<nil>]",
		"vm":       "[voicemail/<nil>]",
	}
	for id, w := range wantHits {
		if g := fmt.Sprint(got[id]); g != w {
			t.Errorf("subscription %s got %s, want %s", id, g, w)
		}
	}
}
