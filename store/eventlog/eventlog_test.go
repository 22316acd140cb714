package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAppendReadRoundTrip(t *testing.T) {
	l := openTest(t, Options{}, hooks{})
	calls := []struct {
		name    string
		entries []Entry
	}{
		{"one", []Entry{ev("call", `{"model":"call","id":1}`)}},
		{"three", []Entry{ev("cdr", `{"a":1}`), ev("cdr", `{"a":2}`), ev("agent", `{"a":3}`)}},
		{"empty body and model", []Entry{{Model: "", Body: nil}}},
		{"binary body", []Entry{{Model: "x", Body: []byte{0, 1, 2, 255, '\n'}}}},
		{"max model", []Entry{{Model: strings.Repeat("m", MaxModelLen), Body: []byte(`{}`)}}},
		{"unicode", []Entry{ev("message", `{"text":"héllo ☎"}`)}},
		{"big body", []Entry{{Model: "cdr", Body: bytes.Repeat([]byte("x"), 64<<10)}}},
	}
	var want []Record
	next := uint64(1)
	for _, c := range calls {
		first, ms, err := l.Append(context.Background(), c.entries)
		if err != nil {
			t.Fatalf("%s: append: %v", c.name, err)
		}
		if first != next {
			t.Fatalf("%s: firstSeq = %d, want %d", c.name, first, next)
		}
		if ms <= 0 {
			t.Fatalf("%s: ingestMs = %d", c.name, ms)
		}
		for i, e := range c.entries {
			want = append(want, Record{Seq: first + uint64(i), IngestMs: ms, Model: e.Model, Body: e.Body})
		}
		next += uint64(len(c.entries))
		if got := l.LastSeq(); got != next-1 {
			t.Fatalf("%s: LastSeq = %d, want %d", c.name, got, next-1)
		}
	}
	assertRecords(t, readAll(t, l), want)
	if got := l.FirstSeq(); got != 1 {
		t.Fatalf("FirstSeq = %d, want 1", got)
	}

	windows := []struct {
		from uint64
		max  int
		want []uint64
	}{
		{0, 3, []uint64{1, 2, 3}},
		{1, 1, []uint64{1}},
		{4, 2, []uint64{4, 5}},
		{8, 100, []uint64{8, 9}},
		{9, 5, []uint64{9}},
		{10, 5, nil},
		{1000, 5, nil},
		{1, 0, nil},
		{1, -1, nil},
	}
	for _, w := range windows {
		t.Run(fmt.Sprintf("read from=%d max=%d", w.from, w.max), func(t *testing.T) {
			recs, err := l.Read(w.from, w.max)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(recs); !slices.Equal(got, w.want) {
				t.Fatalf("seqs = %v, want %v", got, w.want)
			}
		})
	}
}

func assertRecords(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records (%v), want %d", len(got), seqs(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.IngestMs != w.IngestMs || g.Model != w.Model || !bytes.Equal(g.Body, w.Body) {
			t.Fatalf("record %d = {%d %d %q %q}, want {%d %d %q %q}", i,
				g.Seq, g.IngestMs, g.Model, g.Body, w.Seq, w.IngestMs, w.Model, w.Body)
		}
	}
}

func TestAppendErrors(t *testing.T) {
	l := openTest(t, Options{}, hooks{})
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		entries []Entry
		want    error
	}{
		{"no entries", context.Background(), nil, ErrNoEntries},
		{"empty slice", context.Background(), []Entry{}, ErrNoEntries},
		{"model too long", context.Background(), []Entry{ev("ok", "{}"), {Model: strings.Repeat("m", MaxModelLen+1)}}, ErrModelTooLong},
		{"cancelled context", cancelled, []Entry{ev("ok", "{}")}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := l.Append(tc.ctx, tc.entries)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if got := l.LastSeq(); got != 0 {
		t.Fatalf("LastSeq = %d after failed appends, want 0", got)
	}
	if s := l.Stats(); s.Appends != 0 || s.Commits != 0 {
		t.Fatalf("stats after failed appends = %+v", s)
	}
}

func TestOpenInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"no path", Options{}},
		{"negative retention", Options{Path: testPath(t), Retention: -time.Second}},
		{"negative bytes", Options{Path: testPath(t), RetentionBytes: -1}},
		{"negative batch", Options{Path: testPath(t), MaxBatchEvents: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.opts); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("err = %v, want ErrInvalidOptions", err)
			}
		})
	}
}

var incarnationRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

func TestReopenAndIncarnation(t *testing.T) {
	path := testPath(t)
	opts := Options{Path: path, Logger: testLogger()}

	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	inc := l.Incarnation()
	if !incarnationRE.MatchString(inc) {
		t.Fatalf("incarnation %q is not 16 lowercase hex chars", inc)
	}
	mustAppend(t, l, ev("call", `{"n":1}`), ev("call", `{"n":2}`))
	mustAppend(t, l, ev("cdr", `{"n":3}`))
	before := readAll(t, l)
	statsBefore := l.Stats()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Incarnation(); got != inc {
		t.Fatalf("incarnation after reopen = %q, want %q", got, inc)
	}
	if got, want := l.LastSeq(), uint64(3); got != want {
		t.Fatalf("LastSeq after reopen = %d, want %d", got, want)
	}
	if s := l.Stats(); s.Bytes != statsBefore.Bytes || s.Records != 3 || s.FirstSeq != 1 {
		t.Fatalf("stats after reopen = %+v, before %+v", s, statsBefore)
	}
	assertRecords(t, readAll(t, l), before)
	if first, _ := mustAppend(t, l, ev("call", `{"n":4}`)); first != 4 {
		t.Fatalf("firstSeq after reopen = %d, want 4", first)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Incarnation(); got == inc || !incarnationRE.MatchString(got) {
		t.Fatalf("incarnation of a recreated file = %q (old %q)", got, inc)
	}
	if l.LastSeq() != 0 || l.FirstSeq() != 1 {
		t.Fatalf("recreated file: first %d last %d, want 1 0", l.FirstSeq(), l.LastSeq())
	}
}

func TestLastSeqPersistsAfterTrimAll(t *testing.T) {
	path := testPath(t)
	opts := Options{Path: path, Logger: testLogger()}
	l, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustAppend(t, l, ev("call", `{"i":%d}`, i))
	}
	st, err := l.Trim(l.LastSeq()+1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted != 10 || st.Dropped != 0 || st.Bytes != 0 {
		t.Fatalf("trim stats = %+v", st)
	}
	check := func(when string) {
		t.Helper()
		s := l.Stats()
		if s.LastSeq != 10 || s.FirstSeq != 11 || s.Records != 0 || s.Bytes != 0 {
			t.Fatalf("%s: stats = %+v", when, s)
		}
		if recs := readAll(t, l); len(recs) != 0 {
			t.Fatalf("%s: read %d records", when, len(recs))
		}
	}
	check("after trim")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	check("after reopen")
	if first, _ := mustAppend(t, l, ev("call", `{}`)); first != 11 {
		t.Fatalf("firstSeq = %d, want 11", first)
	}
	if l.FirstSeq() != 11 {
		t.Fatalf("FirstSeq = %d, want 11", l.FirstSeq())
	}
}

func TestGroupCommit(t *testing.T) {
	const callers = 200
	g := newGate()
	l := openTest(t, Options{}, hooks{beforeCommit: g.hook})

	firsts := make([]uint64, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			firsts[i], _, errs[i] = l.Append(context.Background(), []Entry{ev("call", `{"caller":%d}`, i)})
		})
	}
	// The first transaction is held until every caller has queued, so the
	// rest must share transactions whatever the machine's speed.
	waitFor(t, "all appends queued", func() bool { return l.Stats().Appends == callers })
	close(g.release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}

	s := l.Stats()
	t.Logf("stats %+v, batches %v", s, g.sizes())
	if s.Appends != callers {
		t.Fatalf("Appends = %d, want %d", s.Appends, callers)
	}
	if s.Commits >= s.Appends || s.Commits > 2 {
		t.Fatalf("Commits = %d for %d appends: not grouped", s.Commits, s.Appends)
	}
	sorted := slices.Clone(firsts)
	slices.Sort(sorted)
	if !slices.Equal(sorted, seqRange(1, callers)) {
		t.Fatalf("seqs are not unique and gap-free: %v", sorted)
	}
	recs := readAll(t, l)
	if got := seqs(recs); !slices.Equal(got, seqRange(1, callers)) {
		t.Fatalf("stored seqs = %v", got)
	}
	for i, first := range firsts {
		if want := fmt.Sprintf(`{"caller":%d}`, i); string(recs[first-1].Body) != want {
			t.Fatalf("seq %d body = %s, want %s", first, recs[first-1].Body, want)
		}
	}
}

func TestAppendAtomicUnderConcurrency(t *testing.T) {
	const (
		writers  = 8
		calls    = 25
		maxBatch = 16
	)
	var (
		mu      sync.Mutex
		batches []batchSize
	)
	l := openTest(t, Options{MaxBatchEvents: maxBatch}, hooks{beforeCommit: func(events, calls int) {
		mu.Lock()
		batches = append(batches, batchSize{events, calls})
		mu.Unlock()
	}})
	type result struct {
		w, c, n int
		first   uint64
		ms      int64
	}
	results := make(chan result, writers*calls)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for c := range calls {
				n := 1 + (w+c)%(maxBatch+3) // includes calls larger than MaxBatchEvents
				entries := make([]Entry, n)
				for i := range entries {
					entries[i] = ev("call", `{"w":%d,"c":%d,"i":%d}`, w, c, i)
				}
				first, ms, err := l.Append(context.Background(), entries)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				results <- result{w, c, n, first, ms}
			}
		})
	}
	wg.Wait()
	close(results)

	recs := readAll(t, l)
	if got := seqs(recs); !slices.Equal(got, seqRange(1, uint64(len(recs)))) {
		t.Fatalf("stored seqs are not gap-free: %v", got)
	}
	total := 0
	for r := range results {
		total += r.n
		for i := range r.n {
			rec := recs[r.first-1+uint64(i)]
			want := fmt.Sprintf(`{"w":%d,"c":%d,"i":%d}`, r.w, r.c, i)
			if string(rec.Body) != want || rec.IngestMs != r.ms {
				t.Fatalf("seq %d = %s @%d, want %s @%d", rec.Seq, rec.Body, rec.IngestMs, want, r.ms)
			}
		}
	}
	if total != len(recs) {
		t.Fatalf("stored %d records, appended %d", len(recs), total)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range batches {
		if b.events > maxBatch && b.calls != 1 {
			t.Fatalf("transaction of %d events from %d calls exceeds MaxBatchEvents %d", b.events, b.calls, maxBatch)
		}
	}
}

func TestMaxBatchEventsNeverSplits(t *testing.T) {
	g := newGate()
	l := openTest(t, Options{MaxBatchEvents: 10}, hooks{beforeCommit: g.hook})
	sizes := []int{1, 4, 4, 4, 15, 3}
	var outs []<-chan appendOut
	for i, n := range sizes {
		entries := make([]Entry, n)
		for j := range entries {
			entries[j] = ev("call", `{"call":%d,"i":%d}`, i, j)
		}
		outs = append(outs, appendAsync(context.Background(), l, entries))
		// Queue the calls in a known order.
		waitFor(t, "append queued", func() bool { return l.Stats().Appends == uint64(i+1) })
		if i == 0 {
			<-g.held
		}
	}
	close(g.release)
	next := uint64(1)
	for i, ch := range outs {
		out := await(t, ch)
		if out.err != nil || out.first != next {
			t.Fatalf("call %d: first %d err %v, want first %d", i, out.first, out.err, next)
		}
		next += uint64(sizes[i])
	}
	want := []batchSize{{1, 1}, {8, 2}, {4, 1}, {15, 1}, {3, 1}}
	if got := g.sizes(); !slices.Equal(got, want) {
		t.Fatalf("transactions (events, calls) = %v, want %v", got, want)
	}
}

func TestContextCancelledWhileQueued(t *testing.T) {
	g := newGate()
	l := openTest(t, Options{}, hooks{beforeCommit: g.hook})
	a := appendAsync(context.Background(), l, []Entry{ev("call", `{"a":1}`)})
	<-g.held
	ctx, cancel := context.WithCancel(context.Background())
	b := appendAsync(ctx, l, []Entry{ev("call", `{"b":1}`), ev("call", `{"b":2}`)})
	waitFor(t, "b queued", func() bool { return l.Stats().Appends == 2 })
	cancel()
	if out := await(t, b); !errors.Is(out.err, context.Canceled) {
		t.Fatalf("b: err = %v, want context.Canceled", out.err)
	}
	close(g.release)
	if out := await(t, a); out.err != nil || out.first != 1 {
		t.Fatalf("a: %+v", out)
	}
	// b was withdrawn before the committer took it: it is not stored.
	if first, _ := mustAppend(t, l, ev("call", `{"c":1}`)); first != 2 {
		t.Fatalf("c: firstSeq = %d, want 2", first)
	}
	if got := seqs(readAll(t, l)); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("stored seqs = %v", got)
	}
}

func TestClose(t *testing.T) {
	g := newGate()
	l := openTest(t, Options{}, hooks{beforeCommit: g.hook})
	changed := l.Changed()
	a := appendAsync(context.Background(), l, []Entry{ev("call", `{"a":1}`)})
	<-g.held
	b := appendAsync(context.Background(), l, []Entry{ev("call", `{"b":1}`)})
	waitFor(t, "b queued", func() bool { return l.Stats().Appends == 2 })

	closed := make(chan error, 1)
	go func() { closed <- l.Close() }()
	// b was still queued: it fails at once, while a's transaction is held.
	if out := await(t, b); !errors.Is(out.err, ErrClosed) {
		t.Fatalf("b: err = %v, want ErrClosed", out.err)
	}
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("Changed channel not closed by Close")
	}
	close(g.release)
	if out := await(t, a); out.err != nil || out.first != 1 {
		t.Fatalf("a (in flight at Close) = %+v, want committed at seq 1", out)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return")
	}

	if _, _, err := l.Append(context.Background(), []Entry{ev("call", `{}`)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := l.Read(1, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := l.Trim(1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Trim after Close: %v", err)
	}
	if _, err := l.SeqAtOrAfter(time.Now()); !errors.Is(err, ErrClosed) {
		t.Fatalf("SeqAtOrAfter after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case <-l.Changed():
	default:
		t.Fatal("Changed after Close returns an open channel")
	}
}

func TestChanged(t *testing.T) {
	l := openTest(t, Options{}, hooks{})
	ch := l.Changed()
	select {
	case <-ch:
		t.Fatal("Changed closed before any append")
	default:
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ch:
		case <-time.After(waitTimeout):
			t.Error("Changed not closed after append")
		}
	}()
	mustAppend(t, l, ev("call", `{}`))
	<-done
	ch2 := l.Changed()
	select {
	case <-ch2:
		t.Fatal("new Changed channel is already closed")
	default:
	}
	mustAppend(t, l, ev("call", `{}`))
	select {
	case <-ch2:
	case <-time.After(waitTimeout):
		t.Fatal("second Changed channel not closed after append")
	}
}

// recordBytes is the stored size of a record with this model and body.
func recordBytes(model string, body []byte) int64 {
	return int64(valueHeaderLen + len(model) + len(body))
}

func sumBytes(recs []Record) int64 {
	var n int64
	for _, r := range recs {
		n += recordBytes(r.Model, r.Body)
	}
	return n
}

func TestTrimKeepFrom(t *testing.T) {
	tests := []struct {
		keepFrom    uint64
		wantDeleted int
		wantFirst   uint64
	}{
		{0, 0, 1},
		{1, 0, 1},
		{2, 1, 2},
		{6, 5, 6},
		{10, 9, 10},
		{11, 10, 11},
		{1000, 10, 11},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("keepFrom=%d", tc.keepFrom), func(t *testing.T) {
			l := openTest(t, Options{}, hooks{})
			for i := range 10 {
				mustAppend(t, l, ev("call", `{"i":%d,"pad":"%s"}`, i, strings.Repeat("p", i)))
			}
			st, err := l.Trim(tc.keepFrom, func(recs []Record) {
				t.Errorf("dropped called with %v: nothing is past retention", seqs(recs))
			})
			if err != nil {
				t.Fatal(err)
			}
			recs := readAll(t, l)
			if st.Deleted != tc.wantDeleted || st.Dropped != 0 || st.Bytes != sumBytes(recs) {
				t.Fatalf("stats = %+v, want deleted %d, bytes %d", st, tc.wantDeleted, sumBytes(recs))
			}
			if got := seqs(recs); !slices.Equal(got, seqRange(tc.wantFirst, 10)) {
				t.Fatalf("stored seqs = %v", got)
			}
			s := l.Stats()
			if s.FirstSeq != tc.wantFirst || s.LastSeq != 10 || s.Records != uint64(len(recs)) || s.Bytes != sumBytes(recs) {
				t.Fatalf("Stats = %+v", s)
			}
			if recs, _ := l.Read(0, 1); len(recs) > 0 && recs[0].Seq != tc.wantFirst {
				t.Fatalf("Read(0) starts at %d", recs[0].Seq)
			}
		})
	}
}

func TestTrimRetention(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	const bodyLen = 91 // record = 9 header + 1 model + 91 body = 101 bytes
	tests := []struct {
		name        string
		retention   time.Duration
		retBytes    int64
		now         time.Time
		keepFrom    uint64
		wantDeleted int
		wantDropped []uint64
	}{
		// 15 records: seqs 1-5 at t0, 6-10 at t0+1h, 11-15 at t0+2h.
		{"time: nothing old", 3 * time.Hour, 0, t0.Add(2 * time.Hour), 0, 0, nil},
		{"time: first hour old", 90 * time.Minute, 0, t0.Add(2 * time.Hour), 0, 5, seqRange(1, 5)},
		{"time: exactly at cutoff is kept", time.Hour, 0, t0.Add(time.Hour), 0, 0, nil},
		{"time: with keepFrom inside", 90 * time.Minute, 0, t0.Add(2 * time.Hour), 3, 5, seqRange(3, 5)},
		{"time: keepFrom beyond old ones", 90 * time.Minute, 0, t0.Add(2 * time.Hour), 8, 7, nil},
		{"time: everything old", time.Minute, 0, t0.Add(3 * time.Hour), 0, 15, seqRange(1, 15)},
		{"bytes: under limit", 0, 15 * 101, t0, 0, 0, nil},
		{"bytes: keep 9", 0, 1000, t0, 0, 6, seqRange(1, 6)},
		{"bytes: keep 9 with keepFrom", 0, 1000, t0, 4, 6, seqRange(4, 6)},
		{"bytes: keepFrom enough", 0, 1000, t0, 9, 8, nil},
		{"bytes: one byte", 0, 1, t0, 0, 15, seqRange(1, 15)},
		{"time and bytes", 90 * time.Minute, 3 * 101, t0.Add(2 * time.Hour), 2, 12, seqRange(2, 12)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock(t0)
			l := openTest(t, Options{Retention: tc.retention, RetentionBytes: tc.retBytes, Now: clock.Now}, hooks{})
			for i := range 15 {
				clock.Set(t0.Add(time.Duration(i/5) * time.Hour))
				body := []byte(fmt.Sprintf(`{"i":%02d,"pad":"%s"}`, i, strings.Repeat("p", bodyLen-17)))
				if len(body) != bodyLen {
					t.Fatalf("body len %d", len(body))
				}
				mustAppend(t, l, Entry{Model: "m", Body: body})
			}
			before := readAll(t, l)
			clock.Set(tc.now)
			var dropped []Record
			st, err := l.Trim(tc.keepFrom, func(recs []Record) { dropped = append(dropped, recs...) })
			if err != nil {
				t.Fatal(err)
			}
			after := readAll(t, l)
			if st.Deleted != tc.wantDeleted || st.Dropped != len(tc.wantDropped) || st.Bytes != sumBytes(after) {
				t.Fatalf("stats = %+v, want deleted %d dropped %d bytes %d", st, tc.wantDeleted, len(tc.wantDropped), sumBytes(after))
			}
			var want []Record
			for _, s := range tc.wantDropped {
				want = append(want, before[s-1])
			}
			assertRecords(t, dropped, want)
			assertRecords(t, after, before[tc.wantDeleted:])
			if tc.retBytes > 0 && st.Bytes > tc.retBytes {
				t.Fatalf("bytes %d still above limit %d", st.Bytes, tc.retBytes)
			}
		})
	}
}

func TestTrimBatches(t *testing.T) {
	clock := newFakeClock(time.UnixMilli(1_000_000))
	l := openTest(t, Options{Retention: time.Hour, Now: clock.Now}, hooks{trimBatch: 3})
	for i := range 20 {
		mustAppend(t, l, ev("call", `{"i":%d}`, i))
	}
	clock.Set(clock.Now().Add(2 * time.Hour))
	var calls [][]uint64
	st, err := l.Trim(5, func(recs []Record) {
		// Records are passed before they are deleted.
		if first := l.FirstSeq(); first > recs[0].Seq {
			t.Errorf("dropped(%v) called after FirstSeq moved to %d", seqs(recs), first)
		}
		calls = append(calls, seqs(recs))
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Deleted != 20 || st.Dropped != 16 || st.Bytes != 0 {
		t.Fatalf("stats = %+v", st)
	}
	// Batches of 3 records from seq 1: {1,2,3} {4,5,6} {7,8,9} ... with
	// seqs 1-4 below keepFrom (deleted, not dropped).
	want := [][]uint64{{5, 6}, {7, 8, 9}, {10, 11, 12}, {13, 14, 15}, {16, 17, 18}, {19, 20}}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Fatalf("dropped calls = %v, want %v", calls, want)
	}
	if s := l.Stats(); s.Records != 0 || s.FirstSeq != 21 || s.LastSeq != 20 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestSeqAtOrAfter(t *testing.T) {
	t0 := time.UnixMilli(1_700_000_000_000)
	clock := newFakeClock(t0)
	l := openTest(t, Options{Now: clock.Now}, hooks{})
	if got, err := l.SeqAtOrAfter(t0); err != nil || got != 1 {
		t.Fatalf("empty log: %d %v, want 1", got, err)
	}
	appendAt := func(at time.Time, n int) {
		clock.Set(at)
		entries := make([]Entry, n)
		for i := range entries {
			entries[i] = ev("call", `{}`)
		}
		mustAppend(t, l, entries...)
	}
	appendAt(t0, 2)                            // 1-2
	appendAt(t0.Add(10*time.Millisecond), 1)   // 3
	appendAt(t0.Add(20*time.Millisecond), 3)   // 4-6
	appendAt(t0.Add(5*time.Millisecond), 1)    // 7: clock went back, stamped t0+20ms
	appendAt(t0.Add(1000*time.Millisecond), 2) // 8-9

	tests := []struct {
		at   time.Time
		want uint64
	}{
		{t0.Add(-time.Hour), 1},
		{t0, 1},
		{t0.Add(time.Millisecond), 3},
		{t0.Add(10 * time.Millisecond), 3},
		{t0.Add(10*time.Millisecond + 500*time.Microsecond), 3}, // millisecond precision
		{t0.Add(15 * time.Millisecond), 4},
		{t0.Add(20 * time.Millisecond), 4},
		{t0.Add(21 * time.Millisecond), 8},
		{t0.Add(time.Second), 8},
		{t0.Add(time.Second + time.Millisecond), 10},
		{t0.Add(time.Hour), 10},
	}
	for _, tc := range tests {
		t.Run(tc.at.Sub(t0).String(), func(t *testing.T) {
			got, err := l.SeqAtOrAfter(tc.at)
			if err != nil || got != tc.want {
				t.Fatalf("SeqAtOrAfter = %d %v, want %d", got, err, tc.want)
			}
		})
	}
	recs := readAll(t, l)
	for i := 1; i < len(recs); i++ {
		if recs[i].IngestMs < recs[i-1].IngestMs {
			t.Fatalf("IngestMs decreases at seq %d: %d < %d", recs[i].Seq, recs[i].IngestMs, recs[i-1].IngestMs)
		}
	}
	if _, err := l.Trim(5, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.SeqAtOrAfter(t0); got != 5 {
		t.Fatalf("after trim: SeqAtOrAfter(t0) = %d, want 5", got)
	}
	if _, err := l.Trim(100, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.SeqAtOrAfter(t0); got != 10 {
		t.Fatalf("after trimming all: SeqAtOrAfter(t0) = %d, want 10", got)
	}
}

func TestStatsCounters(t *testing.T) {
	l := openTest(t, Options{}, hooks{})
	var want int64
	for i := range 3 {
		e := ev("cdr", `{"i":%d}`, i)
		mustAppend(t, l, e, e)
		want += 2 * recordBytes(e.Model, e.Body)
	}
	s := l.Stats()
	if s.Appends != 3 || s.Commits != 3 || s.Records != 6 || s.Bytes != want || s.FirstSeq != 1 || s.LastSeq != 6 {
		t.Fatalf("stats = %+v, want 3 appends, 3 commits, 6 records, %d bytes", s, want)
	}
}

func TestTrimConcurrentWithAppend(t *testing.T) {
	l := openTest(t, Options{RetentionBytes: 50 * 1024}, hooks{trimBatch: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var droppedMu sync.Mutex
	var dropped []uint64
	wg.Go(func() {
		for ctx.Err() == nil {
			if _, err := l.Trim(l.LastSeq()/2, func(recs []Record) {
				droppedMu.Lock()
				dropped = append(dropped, seqs(recs)...)
				droppedMu.Unlock()
			}); err != nil {
				t.Errorf("trim: %v", err)
				return
			}
		}
	})
	for i := range 300 {
		mustAppend(t, l, ev("call", `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 200)), ev("call", `{}`))
	}
	cancel()
	wg.Wait()
	if _, err := l.Trim(0, nil); err != nil {
		t.Fatal(err)
	}
	recs := readAll(t, l)
	s := l.Stats()
	if s.Bytes != sumBytes(recs) || s.Records != uint64(len(recs)) || s.LastSeq != 600 {
		t.Fatalf("stats %+v vs %d records of %d bytes", s, len(recs), sumBytes(recs))
	}
	if len(recs) > 0 && !slices.Equal(seqs(recs), seqRange(recs[0].Seq, 600)) {
		t.Fatalf("stored seqs not contiguous: %v", seqs(recs))
	}
	if s.Bytes > 50*1024 {
		t.Fatalf("bytes %d above limit", s.Bytes)
	}
	for i := 1; i < len(dropped); i++ {
		if dropped[i] <= dropped[i-1] {
			t.Fatalf("dropped out of order or twice: %v", dropped)
		}
	}
}
