package hub

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

const waitLong = 10 * time.Second

var super = Scope{Role: RoleSuper}

func TestWSLiveFanOutInOrder(t *testing.T) {
	l := newMemLog("inc1")
	l.append(`{"model":"call","n":0}`) // before the hub: not live
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l)
	runHub(t, h)
	a := mustSubscribe(t, h, SubOptions{Scope: super})
	b := mustSubscribe(t, h, SubOptions{Scope: super})
	for i := 1; i <= 100; i++ {
		l.append(fmt.Sprintf(`{"model":"call","n":%d}`, i))
	}
	for _, s := range []*Sub{a, b} {
		got := collect(t, s, 100, waitLong)
		for i, m := range got {
			if m.Event.Seq != uint64(i+2) {
				t.Fatalf("message %d has seq %d, want %d", i, m.Event.Seq, i+2)
			}
			if id := field(t, m, "event-id"); id != dispatch.EventID("inc1", uint64(i+2)) {
				t.Fatalf("event-id %v", id)
			}
			if node := field(t, m, "node"); node != "n1" {
				t.Fatalf("node %v", node)
			}
		}
		quiet(t, s, 50*time.Millisecond)
	}
	// Both connections share the rendered message.
	if st := h.Stats(); st.Connections != 2 || st.Opened != 2 || st.Sent != 200 {
		t.Fatalf("stats %+v", st)
	}
	a.Close()
	a.Close()
	if st := h.Stats(); st.Connections != 1 {
		t.Fatalf("after close: stats %+v", st)
	}
	if _, err := a.Next(nil, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestWSScopeBounds(t *testing.T) {
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l)
	runHub(t, h)
	events := []string{
		`{"model":"call","reseller":"r1","domain":"a.com","user":"100","i":0}`,
		`{"model":"call","reseller":"r1","domain":"b.com","user":"100","i":1}`,
		`{"model":"call","reseller":"r2","domain":"c.com","user":"100","i":2}`,
		`{"model":"call","reseller":["r1","r2"],"domain":["a.com","c.com"],"user":["100","200"],"i":3}`,
		`{"model":"call","domain":"a.com","user":"200","i":4}`,
		`{"model":"auditlog","reseller":"r1","domain":"b.com","target_domain":"a.com","i":5}`,
		`{"model":"auditlog","reseller":"r1","domain":"a.com","target_domain":"b.com","i":6}`,
		`{"model":"call","i":7}`,
		`{"model":"cdr","reseller":"r1","domain":"a.com","user":"100","i":8}`,
	}
	cases := []struct {
		name  string
		scope Scope
		kv    []string // filters the client asks for
		want  []int
	}{
		{"super", super, nil, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"reseller r1", Scope{Role: RoleReseller, Reseller: "r1"}, nil, []int{0, 1, 3, 5, 6, 8}},
		{"reseller r2", Scope{Role: RoleReseller, Reseller: "r2"}, nil, []int{2, 3}},
		{"domain a.com", Scope{Role: RoleDomain, Domain: "a.com"}, nil, []int{0, 3, 4, 8}},
		{"domain a.com of r1", Scope{Role: RoleDomain, Domain: "a.com", Reseller: "r1"}, nil, []int{0, 3, 8}},
		{"domain a.com asking for b.com", Scope{Role: RoleDomain, Domain: "a.com"}, []string{"domain", "b.com"}, nil},
		{"domain a.com asking for everything", Scope{Role: RoleDomain, Domain: "a.com"}, []string{"domain", "*"}, []int{0, 3, 4, 8}},
		{"domain a.com asking for a model", Scope{Role: RoleDomain, Domain: "a.com"}, []string{"model", "cdr"}, []int{8}},
		{"user 100@a.com", Scope{Role: RoleUser, Domain: "a.com", User: "100"}, nil, []int{0, 3, 8}},
		{"user 200@a.com", Scope{Role: RoleUser, Domain: "a.com", User: "200"}, nil, []int{3, 4}},
		{"user 100@a.com asking for user 200", Scope{Role: RoleUser, Domain: "a.com", User: "100"}, []string{"user", "200"}, []int{3}},
	}
	subs := make([]*Sub, len(cases))
	for i, c := range cases {
		subs[i] = mustSubscribe(t, h, SubOptions{Scope: c.scope, Filters: filters(t, c.kv...)})
	}
	l.append(events...)
	// A final marker only super sees, so every connection has been offered
	// everything once super got it.
	l.append(`{"model":"marker"}`)
	all := collect(t, subs[0], len(events)+1, waitLong)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []int
			msgs := all[:len(events)]
			if i > 0 && len(c.want) > 0 {
				msgs = collect(t, subs[i], len(c.want), waitLong)
			} else if i > 0 {
				msgs = nil
			}
			for _, m := range msgs {
				got = append(got, int(field(t, m, "i").(float64)))
			}
			if !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Fatalf("saw events %v, want %v", got, c.want)
			}
			if i > 0 {
				quiet(t, subs[i], 20*time.Millisecond)
			}
		})
	}
}

func TestWSScopeValidate(t *testing.T) {
	h := New(Options{Logger: testLogger()})
	for _, sc := range []Scope{
		{Role: "ingest"}, {Role: "node"}, {Role: ""},
		{Role: RoleReseller}, {Role: RoleDomain}, {Role: RoleUser, Domain: "a.com"},
	} {
		if _, err := h.Subscribe(SubOptions{Scope: sc}); !errors.Is(err, ErrBadScope) {
			t.Errorf("scope %+v: err %v, want ErrBadScope", sc, err)
		}
	}
}

func TestWSSetFiltersReplacesAndRechecksQueued(t *testing.T) {
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l)
	runHub(t, h)
	s := mustSubscribe(t, h, SubOptions{Scope: super, Filters: filters(t, "type", "login", "type", "logout")})
	l.append(`{"model":"x","type":"login","username":"mikey"}`, `{"model":"x","type":"dial"}`,
		`{"model":"x","type":"logout","username":"bob"}`)
	// Wait until the reader queued them (without taking them).
	waitUntil(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.queue.n == 2 })
	// Replace: queued events that fail the new set are not handed out.
	if err := s.SetFilters(filters(t, "username", "mikey")); err != nil {
		t.Fatal(err)
	}
	got := collect(t, s, 1, waitLong)
	if len(got) != 1 || field(t, got[0], "username") != "mikey" {
		t.Fatalf("after SetFilters got %s", got[0].JSON)
	}
	quiet(t, s, 30*time.Millisecond)
	l.append(`{"model":"x","type":"dial","username":"mikey"}`, `{"model":"x","type":"dial","username":"bob"}`)
	got = collect(t, s, 1, waitLong)
	if field(t, got[0], "type") != "dial" || field(t, got[0], "username") != "mikey" {
		t.Fatalf("got %s", got[0].JSON)
	}
	// Empty set: everything.
	if err := s.SetFilters(filters(t)); err != nil {
		t.Fatal(err)
	}
	l.append(`{"model":"y"}`, `{"model":"z","n":1}`)
	if got = collect(t, s, 2, waitLong); got[0].Event.Model != "y" || got[1].Event.Model != "z" {
		t.Fatalf("got %s %s", got[0].JSON, got[1].JSON)
	}
}

func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestWSSlowConnectionFailsAloneAndIsCounted(t *testing.T) {
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger(), QueueMax: 5})
	h.AddSource("n1", l)
	runHub(t, h)
	slow := mustSubscribe(t, h, SubOptions{Scope: super, Filters: filters(t, "model", "call")})
	fast := mustSubscribe(t, h, SubOptions{Scope: super})
	// Events it does not want do not fill its queue.
	for i := 0; i < 20; i++ {
		l.append(`{"model":"cdr"}`)
		collect(t, fast, 1, waitLong)
	}
	if err := slow.Err(); err != nil {
		t.Fatalf("slow failed on events it filters out: %v", err)
	}
	for i := 0; i < 5; i++ {
		l.append(`{"model":"call"}`)
		collect(t, fast, 1, waitLong)
	}
	if err := slow.Err(); err != nil {
		t.Fatalf("slow failed with a full but not overflowing queue: %v", err)
	}
	l.append(`{"model":"call","n":6}`)
	collect(t, fast, 1, waitLong)
	// The fast connection may get the event a moment before the hub
	// offers it to the slow one: wait for the overflow to be recorded.
	waitUntil(t, func() bool { return errors.Is(slow.Err(), ErrSlow) })
	if _, err := slow.Next(nil, 0); !errors.Is(err, ErrSlow) {
		t.Fatalf("slow Next: %v, want ErrSlow", err)
	}
	if st := h.Stats(); st.SlowDisconnects != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The fast one keeps receiving.
	for i := 0; i < 50; i++ {
		l.append(`{"model":"call"}`)
		collect(t, fast, 1, waitLong)
	}
}

func TestWSStartBeyondReaderPosition(t *testing.T) {
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l) // reader position 0
	for i := 1; i <= 10; i++ {
		l.append(fmt.Sprintf(`{"model":"call","n":%d}`, i))
	}
	// The log holds 1..10, the reader has not read any: a start at 8 joins
	// the reader at once, which must skip 1..7 for it.
	s8 := mustSubscribe(t, h, SubOptions{Scope: super, Start: Start{"n1": 8}})
	s3 := mustSubscribe(t, h, SubOptions{Scope: super, Start: Start{"n1": 3}})
	live := mustSubscribe(t, h, SubOptions{Scope: super})
	runHub(t, h)
	l.append(`{"model":"call","n":11}`)
	if got := seqsOf(collect(t, s8, 4, waitLong)); !slices.Equal(got, []uint64{8, 9, 10, 11}) {
		t.Fatalf("start 8: got %v", got)
	}
	if got := seqsOf(collect(t, s3, 9, waitLong)); !slices.Equal(got, []uint64{3, 4, 5, 6, 7, 8, 9, 10, 11}) {
		t.Fatalf("start 3: got %v", got)
	}
	if got := seqsOf(collect(t, live, 11, waitLong)); got[0] != 1 || got[10] != 11 {
		t.Fatalf("live: got %v", got)
	}
	for _, s := range []*Sub{s8, s3, live} {
		quiet(t, s, 20*time.Millisecond)
	}
}

// TestSinceSwitchOverNoGapNoDup hammers the replay → live switch-over:
// events are appended in random batches while connections start at random
// positions (behind, at and beyond the reader), read at random paces, with
// random filters, and the log's reads are randomly delayed. Every
// connection must get exactly the events from its start on that pass its
// filter, in order, once.
func TestWSSinceSwitchOverNoGapNoDup(t *testing.T) {
	const (
		total = 12000
		conns = 50
	)
	l := newMemLog("inc1")
	l.readHook = func(uint64) {
		if rand.IntN(8) == 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		}
	}
	h := New(Options{Logger: testLogger(), ReadChunk: 7, QueueMax: 1 << 20})
	h.AddSource("n1", l)
	runHub(t, h)

	type result struct {
		start  uint64
		filter string // "" all, else the value of k
		got    []uint64
		err    error
	}
	results := make([]*result, conns)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		n := 0
		for n < total {
			k := min(1+rand.IntN(20), total-n)
			batch := make([]string, k)
			for i := range batch {
				n++
				batch[i] = fmt.Sprintf(`{"model":"call","k":"%c","n":%d}`, 'a'+rune(n%3), n)
			}
			l.append(batch...)
			if rand.IntN(4) == 0 {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			}
		}
	}()

	for i := range conns {
		// Spread the connections over the writer's run.
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		last := l.LastSeq()
		r := &result{}
		switch i % 4 {
		case 0:
			r.start = 1 + uint64(rand.Int64N(int64(last)+1)) // behind (or at) the log's end
		case 1:
			r.start = last + 1 // exactly at the end
		case 2:
			r.start = 1
		case 3:
			r.start = last + 1 - min(last, uint64(rand.IntN(5))) // just behind
		}
		if i%2 == 1 {
			r.filter = string(rune('a' + rand.IntN(3)))
		}
		results[i] = r
		s, err := h.Subscribe(SubOptions{Scope: super, Filters: filters(t, "k", orStar(r.filter)), Start: Start{"n1": r.start}})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			slow := rand.IntN(3) == 0
			var buf []*Message
			for {
				var err error
				buf, err = s.Next(buf[:0], 1+rand.IntN(100))
				if err != nil {
					r.err = err
					return
				}
				for _, m := range buf {
					r.got = append(r.got, m.Event.Seq)
				}
				if len(buf) > 0 && buf[len(buf)-1].Event.Seq > total {
					return // one of the end events
				}
				if slow && rand.IntN(10) == 0 {
					time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
				}
				if len(buf) == 0 {
					select {
					case <-s.Ready():
					case <-ctx.Done():
						r.err = ctx.Err()
						return
					}
				}
			}
		}()
	}
	<-writerDone
	// End events: every filter admits one of them.
	l.append(`{"model":"call","k":"a","n":"end"}`, `{"model":"call","k":"b","n":"end"}`, `{"model":"call","k":"c","n":"end"}`)
	wg.Wait()

	for i, r := range results {
		var want []uint64
		for seq := r.start; seq <= total+3; seq++ {
			k := byte('a' + seq%3)
			if seq > total {
				k = byte('a' + (seq - total - 1))
			}
			if r.filter == "" || r.filter[0] == k {
				want = append(want, seq)
			}
		}
		got := r.got
		if r.err != nil {
			t.Errorf("conn %d (start %d, filter %q): %v after %d events; last %v", i, r.start, r.filter, r.err, len(got), tail(got))
			continue
		}
		// It stopped at the first end event it saw (more of them may have
		// come in the same batch).
		want = want[:min(len(want), len(got))]
		if !slices.Equal(got, want) {
			t.Errorf("conn %d (start %d, filter %q): gap or duplicate: %s", i, r.start, r.filter, firstDiff(got, want))
		}
	}
}

func orStar(s string) string {
	if s == "" {
		return "*"
	}
	return s
}

func tail(s []uint64) []uint64 { return s[max(0, len(s)-5):] }

func firstDiff(got, want []uint64) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("at %d got %v, want %v", i, got[i:min(i+5, len(got))], want[i:min(i+5, len(want))])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(got), len(want))
}

func TestWSMultiSourceReplayAndAddSource(t *testing.T) {
	l1, l2 := newMemLog("aaaa"), newMemLog("bbbb")
	for i := 1; i <= 5; i++ {
		l1.append(fmt.Sprintf(`{"model":"call","src":1,"n":%d}`, i))
		l2.append(fmt.Sprintf(`{"model":"call","src":2,"n":%d}`, i))
	}
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l1)
	h.AddSource("n2", l2)
	runHub(t, h)
	s := mustSubscribe(t, h, SubOptions{Scope: super, Start: Start{"n1": 4, "n2": 2}})
	got := collect(t, s, 2+4, waitLong)
	per := map[string][]uint64{}
	for _, m := range got {
		per[m.Event.Node] = append(per[m.Event.Node], m.Event.Seq)
	}
	if !slices.Equal(per["n1"], []uint64{4, 5}) || !slices.Equal(per["n2"], []uint64{2, 3, 4, 5}) {
		t.Fatalf("replay per source %v", per)
	}
	// A source added later reaches open connections live.
	l3 := newMemLog("cccc")
	l3.append(`{"model":"call","src":3,"old":true}`)
	h.AddSource("n3", l3)
	l3.append(`{"model":"call","src":3}`)
	l1.append(`{"model":"call","src":1}`)
	got = collect(t, s, 2, waitLong)
	nodes := []string{got[0].Event.Node, got[1].Event.Node}
	slices.Sort(nodes)
	if !slices.Equal(nodes, []string{"n1", "n3"}) || field(t, got[0], "old") != nil || field(t, got[1], "old") != nil {
		t.Fatalf("after AddSource got %s %s", got[0].JSON, got[1].JSON)
	}
	h.RemoveSource("n3")
	l3.append(`{"model":"call","src":3,"after-remove":true}`)
	quiet(t, s, 30*time.Millisecond)
}

func TestWSParseSince(t *testing.T) {
	l1, l2 := newMemLog("aaaa"), newMemLog("bbbb")
	base := int64(1_700_000_000_000)
	for i := range 10 {
		l1.setNow(base + int64(i)*1000)
		l2.setNow(base + int64(i)*1000 + 500)
		l1.append(`{"model":"call"}`) // seq i+1 at base+i s
		l2.append(`{"model":"call"}`) // seq i+1 at base+i s+0.5s
	}
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l1)
	h.AddSource("n2", l2)

	st, err := h.ParseSince("")
	if err != nil || st != nil {
		t.Fatalf("empty: %v %v", st, err)
	}
	ts := time.UnixMilli(base + 3000).UTC().Format(time.RFC3339Nano)
	st, err = h.ParseSince(ts)
	if err != nil || st["n1"] != 4 || st["n2"] != 4 {
		t.Fatalf("since %s: %v %v", ts, st, err)
	}
	ts = time.UnixMilli(base + 3400).In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano)
	if st, err = h.ParseSince(ts); err != nil || st["n1"] != 5 || st["n2"] != 4 {
		t.Fatalf("since %s: %v %v", ts, st, err)
	}
	// An event-id: right after it in its log; in the others from 1s before
	// its ingest time (n1 seq 6 at base+5s → n2 from base+4s: seq 5).
	if st, err = h.ParseSince(dispatch.EventID("aaaa", 6)); err != nil || st["n1"] != 7 || st["n2"] != 5 {
		t.Fatalf("since event-id: %v %v", st, err)
	}
	// The event was trimmed: the others replay what they hold.
	l1.trim(8)
	if st, err = h.ParseSince(dispatch.EventID("aaaa", 6)); err != nil || st["n1"] != 7 || st["n2"] != 0 {
		t.Fatalf("since trimmed event-id: %v %v", st, err)
	}
	for _, bad := range []string{"yesterday", "2024-13-01T00:00:00Z", "aaaa-", "-5", "zzzz-5"} {
		if _, err := h.ParseSince(bad); !errors.Is(err, ErrBadSince) {
			t.Errorf("since %q: err %v, want ErrBadSince", bad, err)
		}
	}
	// Replay within retention: a start before the first stored event.
	runHub(t, h)
	s := mustSubscribe(t, h, SubOptions{Scope: super, Start: Start{"n1": 7}})
	if got := seqsOf(collect(t, s, 3, waitLong)); !slices.Equal(got, []uint64{8, 9, 10}) {
		t.Fatalf("replay from a trimmed position: %v", got)
	}
}

func TestWSReplayOvertakenByTrim(t *testing.T) {
	l := newMemLog("inc1")
	for range 100 {
		l.append(`{"model":"call"}`)
	}
	h := New(Options{Logger: testLogger(), ReadChunk: 10})
	h.AddSource("n1", l)
	runHub(t, h)
	s := mustSubscribe(t, h, SubOptions{Scope: super, Start: Start{"n1": 1}})
	got, err := s.Next(nil, 0)
	if err != nil || len(got) != 10 {
		t.Fatalf("first chunk: %d %v", len(got), err)
	}
	l.trim(50)
	if _, err := s.Next(nil, 0); !errors.Is(err, ErrReplayTrimmed) {
		t.Fatalf("Next after trim: %v", err)
	}
}

func TestWSStopFailsConnections(t *testing.T) {
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", l)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	s := mustSubscribe(t, h, SubOptions{Scope: super})
	cancel()
	<-done
	select {
	case <-s.Ready():
	case <-time.After(waitLong):
		t.Fatal("not woken by the stop")
	}
	if _, err := s.Next(nil, 0); !errors.Is(err, ErrStopped) {
		t.Fatalf("Next: %v", err)
	}
	if _, err := h.Subscribe(SubOptions{Scope: super}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Subscribe after stop: %v", err)
	}
}

// TestWithEventLog runs the hub on the real event log: live delivery,
// since by time and by event-id.
func TestWSWithEventLog(t *testing.T) {
	el, err := eventlog.Open(eventlog.Options{Path: filepath.Join(t.TempDir(), "events.db"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer el.Close()
	ctx := context.Background()
	first, _, err := el.Append(ctx, []eventlog.Entry{{Model: "call", Body: []byte(`{"model":"call","n":1}`)}, {Model: "call", Body: []byte(`{"model":"call","n":2}`)}})
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{Logger: testLogger()})
	h.AddSource("n1", el)
	runHub(t, h)
	live := mustSubscribe(t, h, SubOptions{Scope: super})
	start, err := h.ParseSince(dispatch.EventID(el.Incarnation(), first))
	if err != nil {
		t.Fatal(err)
	}
	since := mustSubscribe(t, h, SubOptions{Scope: super, Start: start})
	start, err = h.ParseSince(time.Now().Add(-time.Hour).Format(time.RFC3339))
	if err != nil {
		t.Fatal(err)
	}
	all := mustSubscribe(t, h, SubOptions{Scope: super, Start: start})
	if _, _, err := el.Append(ctx, []eventlog.Entry{{Model: "call", Body: []byte(`{"model":"call","n":3}`)}}); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(collect(t, live, 1, waitLong)); !slices.Equal(got, []uint64{3}) {
		t.Fatalf("live: %v", got)
	}
	if got := seqsOf(collect(t, since, 2, waitLong)); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("since event-id: %v", got)
	}
	if got := seqsOf(collect(t, all, 3, waitLong)); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("since time: %v", got)
	}
	if st := h.Stats(); st.Replayed < 3 || st.Sent != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWSRing(t *testing.T) {
	var r ring
	next, want := 0, 0
	for round := range 200 {
		for range rand.IntN(40) {
			if r.n < 100 {
				r.push(queued{gen: uint64(next)}, 100)
				next++
			}
		}
		out := r.pop(nil, rand.IntN(30))
		for _, q := range out {
			if q.gen != uint64(want) {
				t.Fatalf("round %d: popped %d, want %d", round, q.gen, want)
			}
			want++
		}
		if len(r.buf) > 100 {
			t.Fatalf("ring grew to %d", len(r.buf))
		}
	}
}

// TestIndexAgreesWithFilterSet: whatever index key a connection is filed
// under, it receives exactly the events match.FilterSet admits, for random
// filters (several properties, wildcards, repeated values, the model) and
// random events (strings, numbers, booleans, null, arrays, nested arrays,
// objects, missing fields) — also after its filters are replaced.
func TestWSIndexAgreesWithFilterSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	props := []string{"model", "domain", "type", "n", "flag", "tags"}
	vals := []string{"a", "b", "c", "1", "2", "true", "false", "null", "*", "call", "cdr"}
	randFilters := func() []match.Filter {
		var fs []match.Filter
		for range rng.IntN(5) {
			fs = append(fs, match.Filter{Property: props[rng.IntN(len(props))], Value: vals[rng.IntN(len(vals))]})
		}
		return fs
	}
	randValue := func(depth int) string {
		switch rng.IntN(8) {
		case 0:
			return `"` + []string{"a", "b", "c", "true"}[rng.IntN(4)] + `"`
		case 1:
			return []string{"1", "2", "1.0", "-0"}[rng.IntN(4)]
		case 2:
			return []string{"true", "false"}[rng.IntN(2)]
		case 3:
			return "null"
		case 4:
			return `{"a":"a"}`
		case 5:
			if depth > 0 {
				return `["b"]`
			}
			return `["a",["c",2],true]`
		default:
			return `["` + []string{"a", "b", "c"}[rng.IntN(3)] + `","b"]`
		}
	}
	l := newMemLog("inc1")
	h := New(Options{Logger: testLogger(), QueueMax: 1 << 20})
	h.AddSource("n1", l)
	runHub(t, h)
	const conns = 200
	type conn struct {
		s   *Sub
		set match.FilterSet
	}
	cs := make([]conn, conns)
	for i := range cs {
		fs := randFilters()
		cs[i].s = mustSubscribe(t, h, SubOptions{Scope: super, Filters: fs})
		cs[i].set, _ = match.NewFilterSet(fs)
	}
	round := func(n int) {
		var bodies []string
		for i := range n {
			b := `{"model":"` + []string{"call", "cdr", "a"}[rng.IntN(3)] + `","i":` + strconv.Itoa(i)
			for _, p := range props[1:] {
				if rng.IntN(3) > 0 {
					b += `,"` + p + `":` + randValue(0)
				}
			}
			bodies = append(bodies, b+"}")
		}
		first := l.append(bodies...)
		recs, _ := l.Read(first, n)
		wantBy := make([][]uint64, conns)
		for _, r := range recs {
			ev := toEvent("n1", "inc1", &r)
			f, _ := ev.Fields()
			for i := range cs {
				if cs[i].set.Match(f) {
					wantBy[i] = append(wantBy[i], r.Seq)
				}
			}
		}
		l.append(`{"model":"zz-end"}`) // no filter above admits it... unless empty
		for i := range cs {
			var got []uint64
			deadline := time.Now().Add(waitLong)
			for time.Now().Before(deadline) {
				msgs, err := cs[i].s.Next(nil, 1000)
				if err != nil {
					t.Fatal(err)
				}
				done := false
				for _, m := range msgs {
					if m.Event.Model == "zz-end" {
						done = true
						continue
					}
					got = append(got, m.Event.Seq)
				}
				if done || (len(msgs) == 0 && len(got) >= len(wantBy[i]) && l.LastSeq() == h.sources["n1"].posLocked()) {
					break
				}
				if len(msgs) == 0 {
					select {
					case <-cs[i].s.Ready():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
			if !slices.Equal(got, wantBy[i]) {
				t.Fatalf("conn %d filters %v (key %+v): got %v, want %v", i, cs[i].set, cs[i].s.filters.Load().key, got, wantBy[i])
			}
		}
	}
	round(300)
	for i := range cs { // replace every filter set
		fs := randFilters()
		if err := cs[i].s.SetFilters(fs); err != nil {
			t.Fatal(err)
		}
		cs[i].set, _ = match.NewFilterSet(fs)
	}
	round(300)
}
