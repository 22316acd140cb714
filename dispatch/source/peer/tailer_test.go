package peer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// TestTailerCopiesExactly: the mirror gets the peer's incarnation and the
// same records (seqs, ingest times, models, bodies), stored ones first and
// then live ones, and presents the peer's log to the engine (first and
// last seq, SeqAtOrAfter by the peer's ingest times). The tailer presents
// its node token.
func TestTailerCopiesExactly(t *testing.T) {
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	src := openLog(t, clk.now)
	for range 50 {
		clk.advance(10 * time.Millisecond)
		appendEvents(t, src, int(src.LastSeq())+1, 1)
	}
	if _, err := src.Trim(6, nil); err != nil { // the peer keeps 6..50
		t.Fatal(err)
	}
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	startTailer(t, p, m, nil)
	waitMirrored(t, m, src)

	clk.advance(time.Second)
	appendBatch(t, src, 51, 3000) // more than one mirror transaction
	clk.advance(time.Second)
	appendEvents(t, src, 3051, 5)
	waitMirrored(t, m, src)

	for _, at := range []time.Time{time.UnixMilli(0), time.UnixMilli(1_700_000_000_100), clk.now(), clk.now().Add(time.Hour)} {
		got, err1 := m.SeqAtOrAfter(at)
		want, err2 := src.SeqAtOrAfter(at)
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("SeqAtOrAfter(%d): mirror %d (%v), peer %d (%v)", at.UnixMilli(), got, err1, want, err2)
		}
	}
	p.mu.Lock()
	for i, a := range p.auths {
		if a != "Bearer "+p.token {
			t.Errorf("request %d: Authorization %q, want the node token", i, a)
		}
	}
	p.mu.Unlock()
}

// seqReader reads a mirror the way the engine's source reader does: from
// the last seq it saw, woken by Changed. It records every seq it gets and
// notes a gap or a repeat within one incarnation.
type seqReader struct {
	mu       sync.Mutex
	seen     map[string][]uint64 // by incarnation
	problems []string
	stop     chan struct{}
	done     chan struct{}
}

func readMirror(t *testing.T, m *Mirror) *seqReader {
	r := &seqReader{seen: map[string][]uint64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		inc, pos := m.Incarnation(), m.FirstSeq()-1
		for {
			changed := m.Changed()
			if cur := m.Incarnation(); cur != inc {
				inc, pos = cur, m.FirstSeq()-1
			}
			recs, err := m.Read(pos+1, 500)
			if m.Incarnation() != inc {
				continue // replaced under the read
			}
			if err == nil && len(recs) > 0 {
				r.mu.Lock()
				for _, rec := range recs {
					if rec.Seq != pos+1 {
						r.problems = append(r.problems, fmt.Sprintf("incarnation %s: seq %d after %d", inc, rec.Seq, pos))
					}
					r.seen[inc] = append(r.seen[inc], rec.Seq)
					pos = rec.Seq
				}
				r.mu.Unlock()
				continue
			}
			select {
			case <-r.stop:
				return
			case <-changed:
			case <-time.After(100 * time.Millisecond): // the log under it may have been closed
			}
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *seqReader) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

func (r *seqReader) count(inc string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen[inc])
}

// TestTailerResumesAfterDroppedConnections: connections cut while the peer
// ingests are resumed from the next seq of the same incarnation: the
// mirror ends up equal to the peer's log, and a reader of the mirror sees
// every seq once, in order.
func TestTailerResumesAfterDroppedConnections(t *testing.T) {
	src := openLog(t, nil)
	appendEvents(t, src, 1, 100)
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	var logs logBuffer
	startTailer(t, p, m, logs.logger())
	waitMirrored(t, m, src)
	reader := readMirror(t, m)

	// Five rounds: the peer ingests 500 events while the connection is
	// cut in the middle of them.
	const total = 100 + 5*500
	cuts := 0
	for round := range 5 {
		base := 101 + round*500
		ingestDone := make(chan struct{})
		go func() {
			defer close(ingestDone)
			for n := base; n < base+500; n += 5 {
				entries := make([]eventlog.Entry, 5)
				for i := range entries {
					entries[i] = eventlog.Entry{Model: "call", Body: fmt.Appendf(nil, `{"n":%d}`, n+i)}
				}
				if _, _, err := src.Append(context.Background(), entries); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		}()
		mid := uint64(base + 100)
		waitUntil(t, fmt.Sprintf("the mirror to pass seq %d", mid), func() (bool, string) {
			return m.LastSeq() >= mid, fmt.Sprintf("mirror at %d, peer at %d", m.LastSeq(), src.LastSeq())
		})
		p.dropConnections()
		cuts++
		<-ingestDone
		waitMirrored(t, m, src)
	}
	waitMirrored(t, m, src)
	waitUntil(t, "the reader to see every record", func() (bool, string) {
		n := reader.count(src.Incarnation())
		return n == total, fmt.Sprintf("%d of %d", n, total)
	})
	reader.close()
	for _, pr := range reader.problems {
		t.Error(pr)
	}

	reqs := p.requests()
	if len(reqs) < cuts+1 {
		t.Fatalf("%d requests for %d cuts: the tailer did not reconnect", len(reqs), cuts)
	}
	prev := uint64(0)
	for i, q := range reqs {
		from, _ := strconv.ParseUint(q.Get("from"), 10, 64)
		if i > 0 && q.Get("incarnation") != src.Incarnation() {
			t.Errorf("request %d: incarnation %q, want the peer's %q", i, q.Get("incarnation"), src.Incarnation())
		}
		if i > 0 && from <= prev {
			t.Errorf("request %d asks from %d, not after request %d's %d: it would copy records again", i, from, i-1, prev)
		}
		prev = from
	}
	if strings.Contains(logs.String(), "do not follow") || strings.Contains(logs.String(), "copying into the mirror") {
		t.Errorf("the tailer tried to copy records out of order:\n%s", logs.String())
	}
	t.Logf("%d cuts, %d requests (from: %v)", cuts, len(reqs), fromValues(reqs))
}

func fromValues(reqs []url.Values) []string {
	out := make([]string, len(reqs))
	for i, q := range reqs {
		out[i] = q.Get("from")
	}
	return out
}

// TestTailerSwitchesToNewIncarnation: the peer's log is recreated (its data
// dir was wiped): the tailer replaces the copy (Mirror.Reset), the mirror's
// engine-facing methods show the new log only, a reader waiting on the
// old copy's Changed wakes up, and the copy survives a reopen.
func TestTailerSwitchesToNewIncarnation(t *testing.T) {
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	old := openLog(t, clk.now)
	appendEvents(t, old, 1, 40)
	p := newTestPeer(t, old)
	path := filepath.Join(t.TempDir(), "peer.db")
	m, err := OpenMirror(path, eventlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	stop := startTailer(t, p, m, nil)
	waitMirrored(t, m, old)
	oldChanged := m.Changed()

	clk.advance(time.Hour)
	wiped := openLog(t, clk.now)
	if wiped.Incarnation() == old.Incarnation() {
		t.Fatal("two logs with one incarnation")
	}
	appendEvents(t, wiped, 1, 7) // seqs 1..7 again, other events
	p.serve(wiped)
	p.dropConnections()

	waitMirrored(t, m, wiped)
	select {
	case <-oldChanged:
	default:
		t.Error("a reader waiting on the old copy's Changed was not woken by the switch")
	}
	if got, want := m.Incarnation(), wiped.Incarnation(); got != want {
		t.Errorf("Incarnation %q, want %q", got, want)
	}
	if m.FirstSeq() != 1 || m.LastSeq() != 7 {
		t.Errorf("FirstSeq %d LastSeq %d, want 1 and 7", m.FirstSeq(), m.LastSeq())
	}
	if seq, err := m.SeqAtOrAfter(time.UnixMilli(1_700_000_000_000)); err != nil || seq != 1 {
		t.Errorf("SeqAtOrAfter(before the old log): %d %v, want 1 (the old records are gone)", seq, err)
	}
	recs, err := m.Read(1, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !strings.Contains(string(r.Body), `"n":`) || r.IngestMs < clk.now().UnixMilli() {
			t.Errorf("record %d after the switch is from the old log: ingest %d body %s", r.Seq, r.IngestMs, r.Body)
		}
	}
	// Live records of the new log follow.
	appendEvents(t, wiped, 8, 5)
	waitMirrored(t, m, wiped)

	// The copy is durable with its new incarnation.
	stop()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := OpenMirror(path, eventlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("reopen the mirror: %v", err)
	}
	defer func() { _ = m2.Close() }()
	if m2.Incarnation() != wiped.Incarnation() {
		t.Errorf("reopened mirror: incarnation %q, want %q", m2.Incarnation(), wiped.Incarnation())
	}
	sameRecords(t, "reopened mirror", readAll(t, m2), readAll(t, wiped))
}

// TestTailerStartsANewCopyAfterAGap: while the tailer was away, the peer
// trimmed records it had not copied yet: the copy is replaced by one that
// starts at the peer's first stored record (no gap inside a copy), in the
// same incarnation.
func TestTailerStartsANewCopyAfterAGap(t *testing.T) {
	src := openLog(t, nil)
	appendEvents(t, src, 1, 10)
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	stop := startTailer(t, p, m, nil)
	waitMirrored(t, m, src)
	stop()

	appendEvents(t, src, 11, 20) // 11..30, not copied
	if _, err := src.Trim(21, nil); err != nil {
		t.Fatal(err)
	}
	if src.FirstSeq() != 21 {
		t.Fatalf("peer's first seq %d, want 21", src.FirstSeq())
	}
	reader := readMirror(t, m)
	var trims atomicCount
	startTailerWith(t, p, m, nil, trims.add)
	waitMirrored(t, m, src)
	if trims.get() == 0 {
		t.Error("Trimmed not called for the new copy after a gap")
	}
	if m.FirstSeq() != 21 || m.Incarnation() != src.Incarnation() {
		t.Errorf("mirror [%d..%d] %s, want [21..30] %s", m.FirstSeq(), m.LastSeq(), m.Incarnation(), src.Incarnation())
	}
	// A reader of the mirror (1..10 before) finds 21..30 next.
	waitUntil(t, "the reader to see the new copy", func() (bool, string) {
		n := reader.count(src.Incarnation())
		return n == 20, fmt.Sprint(n)
	})
	reader.close()
	if len(reader.problems) != 1 || !strings.Contains(reader.problems[0], "seq 21 after 10") {
		t.Errorf("reader saw %v, want exactly the gap 10 → 21", reader.problems)
	}
}

// TestTailerEmptyCopyStartsAtPeersFirst: a new copy of a peer that has
// trimmed its beginning starts at its first stored record.
func TestTailerEmptyCopyStartsAtPeersFirst(t *testing.T) {
	src := openLog(t, nil)
	appendEvents(t, src, 1, 30)
	if _, err := src.Trim(12, nil); err != nil {
		t.Fatal(err)
	}
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	startTailer(t, p, m, nil)
	waitMirrored(t, m, src)
	if m.FirstSeq() != 12 {
		t.Errorf("mirror starts at %d, want 12", m.FirstSeq())
	}
}

// TestTailerRejectsBadStreams: a peer that answers with an error, without
// an incarnation, or with malformed or out-of-order frames never gets
// anything into the mirror; the tailer keeps retrying, and copies once
// the peer answers properly.
func TestTailerRejectsBadStreams(t *testing.T) {
	good := openLog(t, nil)
	appendEvents(t, good, 1, 5)
	rec := func(seq uint64) []byte {
		return appendFrame(nil, &eventlog.Record{Seq: seq, IngestMs: 1, Model: "call", Body: []byte(`{"model":"call"}`)})
	}
	cases := []struct {
		name  string
		serve func(w http.ResponseWriter)
	}{
		{"401", func(w http.ResponseWriter) { http.Error(w, "no", http.StatusUnauthorized) }},
		{"no incarnation", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(rec(1))
		}},
		{"oversized body", func(w http.ResponseWriter) {
			w.Header().Set(HeaderIncarnation, "0badc0de0badc0de")
			w.Header().Set(HeaderFirstSeq, "1")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(frameBytes(1, 1, "call", maxFrameBody+1, []byte("{}")))
		}},
		{"truncated", func(w http.ResponseWriter) {
			w.Header().Set(HeaderIncarnation, "0badc0de0badc0de")
			w.Header().Set(HeaderFirstSeq, "1")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(rec(1)[:20])
		}},
		{"out of order", func(w http.ResponseWriter) {
			w.Header().Set(HeaderIncarnation, "0badc0de0badc0de")
			w.Header().Set(HeaderFirstSeq, "1")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(append(append(rec(1), rec(3)...), rec(2)...))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			bad := true
			attempts := 0
			goodH := Handler(good, quietLogger())
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				b := bad
				attempts++
				mu.Unlock()
				if b {
					tc.serve(w)
					return
				}
				goodH.ServeHTTP(w, r)
			}))
			defer srv.Close()
			defer srv.CloseClientConnections()
			m := openTestMirror(t)
			inc := m.Incarnation()
			tl := &Tailer{Node: "p", Mirror: m, Token: "t", Logger: quietLogger(), Client: &http.Client{},
				Addr: func() (string, bool) { return srv.Listener.Addr().String(), true }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); tl.Run(ctx) }()
			defer func() { cancel(); <-done }()
			waitUntil(t, "two attempts", func() (bool, string) {
				mu.Lock()
				defer mu.Unlock()
				return attempts >= 2, fmt.Sprint(attempts)
			})
			got := readAll(t, m)
			switch tc.name {
			case "out of order":
				// Whatever arrived in order may be kept; never a gap.
				for i := 1; i < len(got); i++ {
					if got[i].Seq != got[i-1].Seq+1 {
						t.Fatalf("the mirror holds seq %d after %d", got[i].Seq, got[i-1].Seq)
					}
				}
				if len(got) > 1 {
					t.Fatalf("the mirror holds %s of an out-of-order stream 1, 3, 2", seqSpan(got))
				}
			case "401", "no incarnation":
				if len(got) != 0 || m.Incarnation() != inc {
					t.Fatalf("after a bad answer the mirror holds %d records, incarnation %s (was %s)", len(got), m.Incarnation(), inc)
				}
			default:
				if len(got) != 0 {
					t.Fatalf("after a malformed frame the mirror holds %s", seqSpan(got))
				}
			}
			mu.Lock()
			bad = false
			mu.Unlock()
			waitMirrored(t, m, good)
		})
	}
}

// TestMirrorReopenAndReset: a mirror keeps its incarnation and records
// across a reopen; Reset empties it into another incarnation.
func TestMirrorReopenAndReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	m, err := OpenMirror(path, eventlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Reset("aaaa"); err != nil {
		t.Fatal(err)
	}
	recs := []eventlog.Record{{Seq: 5, IngestMs: 10, Model: "call", Body: []byte("{}")}, {Seq: 6, IngestMs: 11, Model: "call", Body: []byte("{}")}}
	if err := m.appendRecords(recs); err != nil {
		t.Fatal(err)
	}
	if err := m.appendRecords(recs[1:]); err == nil {
		t.Error("a repeated record was accepted")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m, err = OpenMirror(path, eventlog.Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	if m.Incarnation() != "aaaa" || m.FirstSeq() != 5 || m.LastSeq() != 6 {
		t.Fatalf("reopened: %s [%d..%d], want aaaa [5..6]", m.Incarnation(), m.FirstSeq(), m.LastSeq())
	}
	sameRecords(t, "reopened", readAll(t, m), recs)
	if err := m.Reset("bbbb"); err != nil {
		t.Fatal(err)
	}
	if m.Incarnation() != "bbbb" || m.LastSeq() != 0 || len(readAll(t, m)) != 0 {
		t.Fatalf("after Reset: %s last %d", m.Incarnation(), m.LastSeq())
	}
}

// TestTailerFollowsPeerTrim: records the peer's retention drops leave the
// copy too (the peer has counted them; readers holding them must forget
// them, so Trimmed is called), while the tailer streams, and when it
// reconnects to a peer that trimmed meanwhile. Later records still come.
func TestTailerFollowsPeerTrim(t *testing.T) {
	src := openLog(t, nil)
	appendEvents(t, src, 1, 50)
	p := newTestPeer(t, src)
	m := openTestMirror(t)
	var trims atomicCount
	stop := startTailerWith(t, p, m, nil, trims.add)
	waitMirrored(t, m, src)
	if trims.get() != 0 {
		t.Fatalf("Trimmed called %d times before any trim", trims.get())
	}

	if _, err := src.Trim(31, nil); err != nil {
		t.Fatal(err)
	}
	waitMirrored(t, m, src)
	if m.FirstSeq() != 31 || trims.get() == 0 {
		t.Fatalf("after the peer trimmed to 31: mirror starts at %d, Trimmed called %d times", m.FirstSeq(), trims.get())
	}
	appendEvents(t, src, 51, 5)
	waitMirrored(t, m, src)

	// Trimmed while the tailer was away (no gap: the copy had it all).
	stop()
	before := trims.get()
	if _, err := src.Trim(41, nil); err != nil {
		t.Fatal(err)
	}
	startTailerWith(t, p, m, nil, trims.add)
	waitMirrored(t, m, src)
	if m.FirstSeq() != 41 || trims.get() == before {
		t.Fatalf("after reconnecting to a peer trimmed to 41: mirror starts at %d, Trimmed called %d more times", m.FirstSeq(), trims.get()-before)
	}
}

type atomicCount struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCount) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *atomicCount) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
