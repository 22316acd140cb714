package kamailio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

func ns(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }

func TestReader(t *testing.T) {
	a, b := `{"event":"invite","callid":"a"}`, `{"event":"end","callid":"b"}`
	tests := []struct {
		name     string
		in       string
		want     []string
		garbage  int
		finalErr error
	}{
		{"two frames", ns(a) + ns(b), []string{a, b}, 0, io.EOF},
		{"newlines between", ns(a) + "\r\n" + ns(b) + "\n", []string{a, b}, 0, io.EOF},
		{"empty frame", "0:," + ns(a), []string{"", a}, 0, io.EOF},
		{"garbage before", "hello world\n" + ns(a), []string{a}, 1, io.EOF},
		{"garbage between", ns(a) + "xx yy " + ns(b), []string{a, b}, 1, io.EOF},
		{"missing comma resyncs", "5:abcde;" + ns(b), []string{b}, 1, io.EOF},
		{"too many digits", "123456789:" + ns(a), []string{a}, 1, io.EOF},
		{"truncated at the end", ns(a) + "40:{\"event\"", []string{a}, 0, io.ErrUnexpectedEOF},
		{"truncated length", ns(a) + "12", []string{a}, 0, io.ErrUnexpectedEOF},
		{"garbage at the end", ns(a) + "zzz", []string{a}, 1, io.ErrUnexpectedEOF},
		{"too much garbage", strings.Repeat("x", MaxGarbage+10), nil, 1, ErrTooMuchGarbage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in))
			garbage := 0
			r.OnGarbage = func(err error) {
				if !errors.Is(err, ErrGarbage) {
					t.Errorf("OnGarbage(%v): want ErrGarbage", err)
				}
				garbage++
			}
			var got []string
			var err error
			for i := 0; i < 100; i++ {
				var p []byte
				if p, err = r.Next(); err != nil {
					break
				}
				got = append(got, string(p))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("frames %q, want %q", got, tt.want)
			}
			if !errors.Is(err, tt.finalErr) {
				t.Errorf("final error %v, want %v", err, tt.finalErr)
			}
			if garbage != tt.garbage {
				t.Errorf("%d runs of garbage reported, want %d", garbage, tt.garbage)
			}
		})
	}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func TestMap(t *testing.T) {
	base := `"callid":"c1","from_user":"1001","from_domain":"example.com","to_user":"2002","to_domain":"example.com","init_ts":"100.250000"`
	tests := []struct {
		name  string
		in    string
		want  []map[string]any // fields each output must have
		isErr bool
	}{
		{"invite", `{"event":"invite",` + base + `,"ts":"100.250000"}`, []map[string]any{
			{"model": "call", "event": "start", "orig_callid": "c1", "domain": "example.com", "user": []any{"1001", "2002"}, "orig_from_uri": "sip:1001@example.com"}}, false},
		{"answer", `{"event":"answer",` + base + `,"ts":"101.000000","answer_ts":"101.000000"}`, []map[string]any{
			{"model": "call", "event": "answer", "call-state": "answered", "time_answer": "101.000000"}}, false},
		{"end answered", `{"event":"end",` + base + `,"ts":"103.600000","answer_ts":"101.000000","code":200}`, []map[string]any{
			{"model": "call", "event": "end", "remove": "yes", "disposition": "answered"},
			{"model": "cdr", "from": "1001", "to": "2002", "domain": "example.com", "duration": float64(3), "duration_ms": float64(2600),
				"total_duration_ms": float64(3350), "disposition": "answered", "orig_callid": "c1", "answered": true}}, false},
		{"busy", `{"event":"failed",` + base + `,"ts":"100.300000","code":486,"reason":"Busy Here"}`, []map[string]any{
			{"model": "call", "event": "end", "remove": "yes", "disposition": "busy", "hangup_code": float64(486)},
			{"model": "cdr", "disposition": "busy", "duration": float64(0), "reason": "Busy Here", "answered": false}}, false},
		{"cancelled", `{"event":"failed",` + base + `,"ts":"100.300000","code":487}`, []map[string]any{
			{"model": "call", "remove": "yes"}, {"model": "cdr", "disposition": "cancelled"}}, false},
		{"two domains", `{"event":"invite","callid":"c2","from_user":"1","from_domain":"a.com","to_user":"1","to_domain":"b.com"}`, []map[string]any{
			{"domain": []any{"a.com", "b.com"}, "user": "1"}}, false},
		{"scope fields of the payload are not copied", `{"event":"invite","callid":"c3","domain":7,"model":"x"}`, []map[string]any{
			{"model": "call"}}, false},
		{"unknown event", `{"event":"refer","callid":"c1"}`, nil, false},
		{"no callid", `{"event":"invite"}`, nil, true},
		{"not an object", `[1,2]`, nil, true},
		{"not JSON", `hello`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Map([]byte(tt.in))
			if tt.isErr {
				if !errors.Is(err, ErrBadEvent) {
					t.Fatalf("err %v, want ErrBadEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(out) != len(tt.want) {
				t.Fatalf("%d events, want %d: %s", len(out), len(tt.want), out)
			}
			for i, w := range tt.want {
				got := decode(t, out[i])
				for k, v := range w {
					if fmt.Sprint(got[k]) != fmt.Sprint(v) {
						t.Errorf("event %d: %s = %v, want %v (%s)", i, k, got[k], v, out[i])
					}
				}
			}
		})
	}
}

func TestDisposition(t *testing.T) {
	for code, want := range map[int]string{200: DispAnswered, 486: DispBusy, 600: DispBusy, 487: DispCancelled, 408: DispNoAnswer, 480: DispNoAnswer, 503: DispFailed, 0: DispFailed} {
		if got := Disposition(code); got != want {
			t.Errorf("Disposition(%d) = %s, want %s", code, got, want)
		}
	}
}

// memLog is an Appender in memory that can be told to fail.
type memLog struct {
	mu      sync.Mutex
	entries []eventlog.Entry
	fail    bool
}

func (m *memLog) Append(_ context.Context, es []eventlog.Entry) (uint64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return 0, 0, errors.New("disk on fire")
	}
	for _, e := range es {
		m.entries = append(m.entries, eventlog.Entry{Model: e.Model, Body: append([]byte(nil), e.Body...)})
	}
	return uint64(len(m.entries)), time.Now().UnixMilli(), nil
}

func (m *memLog) setFail(f bool) { m.mu.Lock(); m.fail = f; m.mu.Unlock() }

func (m *memLog) callids() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.entries {
		var f struct {
			CallID string `json:"callid"`
		}
		_ = json.Unmarshal(e.Body, &f)
		out = append(out, e.Model+":"+f.CallID)
	}
	return out
}

// fakeEvapi is an evapi server: each accepted connection gets the next
// script, written in pieces, then closed unless the script says to hold.
type fakeEvapi struct {
	ln    net.Listener
	conns chan net.Conn
}

func newFakeEvapi(t *testing.T) *fakeEvapi {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEvapi{ln: ln, conns: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeEvapi) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-f.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not connect within 10s")
		return nil
	}
}

// write sends s in pieces of 7 bytes: partial frames.
func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	for len(s) > 0 {
		n := min(7, len(s))
		if _, err := c.Write([]byte(s[:n])); err != nil {
			t.Fatal(err)
		}
		s = s[n:]
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func call(ev, id string) string {
	return ns(fmt.Sprintf(`{"event":%q,"callid":%q,"from_user":"1001","from_domain":"example.com","to_user":"2002","to_domain":"example.com","init_ts":"1.0","ts":"2.0","code":486}`, ev, id))
}

func startClient(t *testing.T, addr string, log source.Appender) (*Client, context.CancelFunc) {
	t.Helper()
	c := New(Options{Addr: addr, Log: log, Backoff: source.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context's end")
		}
	}
	t.Cleanup(stop)
	return c, stop
}

func TestClientReconnectsAndRecovers(t *testing.T) {
	srv := newFakeEvapi(t)
	log := &memLog{}
	c, _ := startClient(t, srv.ln.Addr().String(), log)

	// 1: two events, garbage, a frame that is no event, one event, then a
	// truncated netstring and the connection closes.
	c1 := srv.accept(t)
	write(t, c1, call("invite", "a")+call("failed", "a")+"GARBAGE\r\n"+ns(`{"hello":1}`)+call("invite", "b")+`80:{"event":"inv`)
	waitFor(t, "3 reads", func() bool { return c.Status().EventsRead >= 4 })
	c1.Close()

	// 2: the client reconnects; the events after that arrive.
	c2 := srv.accept(t)
	waitFor(t, "connected again", func() bool { return c.Status().Connected && c.Status().Connects == 2 })
	write(t, c2, call("failed", "b"))
	want := "[call:a call:a cdr:a call:b call:b cdr:b]"
	waitFor(t, want, func() bool { return fmt.Sprint(log.callids()) == want })
	st := c.Status()
	if st.EventsAppended != 6 || st.EventsDropped != 0 {
		t.Errorf("status %+v: want 6 appended, 0 dropped", st)
	}
	// garbage, the skipped frame, the truncated netstring.
	if st.Errors < 3 || st.LastError == "" {
		t.Errorf("status %+v: want at least 3 errors and a last error", st)
	}
}

func TestClientKeepsReadingWhenAppendFails(t *testing.T) {
	srv := newFakeEvapi(t)
	log := &memLog{}
	log.setFail(true)
	c, _ := startClient(t, srv.ln.Addr().String(), log)
	conn := srv.accept(t)
	write(t, conn, call("invite", "lost"))
	waitFor(t, "the failed append to be counted", func() bool { return c.Status().EventsDropped == 1 })
	log.setFail(false)
	write(t, conn, call("invite", "kept"))
	waitFor(t, "the next event", func() bool { return fmt.Sprint(log.callids()) == "[call:kept]" })
	if st := c.Status(); !st.Connected || st.Connects != 1 || !strings.Contains(st.LastError, "disk on fire") {
		t.Errorf("status %+v: want still connected once, last error naming the append failure", st)
	}
}

func TestClientNoServerBacksOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var logs syncBuffer
	c := New(Options{Addr: addr, Log: &memLog{}, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Backoff: source.Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	waitFor(t, "three failed connects", func() bool { return c.Status().Errors >= 3 })
	cancel()
	<-done
	if st := c.Status(); st.Connected || st.Connects != 0 || !strings.Contains(st.LastError, "connecting failed") {
		t.Errorf("status %+v", st)
	}
	// The same failure again is not logged again at warning level.
	if n := strings.Count(logs.String(), "connecting failed"); n != 1 {
		t.Errorf("%d warnings for a server that stays down, want 1:\n%s", n, logs.String())
	}
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestClientDrainsQueueOnStop(t *testing.T) {
	srv := newFakeEvapi(t)
	log := &memLog{}
	c, stop := startClient(t, srv.ln.Addr().String(), log)
	conn := srv.accept(t)
	var b strings.Builder
	for i := range 200 {
		b.WriteString(call("invite", fmt.Sprint(i)))
	}
	write(t, conn, b.String())
	waitFor(t, "200 reads", func() bool { return c.Status().EventsRead == 200 })
	stop()
	if n := len(log.callids()); n != 200 {
		t.Errorf("%d events in the log after stop, want 200", n)
	}
}
