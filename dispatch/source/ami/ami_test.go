package ami

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

func transcript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/session.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReader(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []string // Event of each block
		garbage  int
		finalErr error
	}{
		{"crlf", "Event: A\r\nX: 1\r\n\r\nEvent: B\r\n\r\n", []string{"A", "B"}, 0, io.EOF},
		{"bare lf and extra blank lines", "\n\nEvent: A\nX: 1\n\n\n\nEvent: B\n\n", []string{"A", "B"}, 0, io.EOF},
		{"garbage lines", "Event: A\r\nthis is not a field\r\n%%%\r\n\r\nEvent: B\r\n\r\n", []string{"A", "B"}, 1, io.EOF},
		{"a block of garbage", "garbage\r\n\r\nEvent: B\r\n\r\n", []string{"B"}, 1, io.EOF},
		{"value with colons", "Event: A\r\nURI: sip:1@h:5060\r\n\r\n", []string{"A"}, 0, io.EOF},
		{"truncated block", "Event: A\r\n\r\nEvent: B\r\nX: 1", []string{"A"}, 0, io.ErrUnexpectedEOF},
		{"truncated line", "Event: A\r\n\r\nEve", []string{"A"}, 0, io.ErrUnexpectedEOF},
		{"line too long", "Event: A\r\n\r\nX: " + strings.Repeat("y", MaxLine) + "\r\n\r\n", []string{"A"}, 0, ErrFraming},
		{"too many lines", "Event: A\r\n\r\n" + strings.Repeat("X: 1\r\n", MaxLines+1), []string{"A"}, 0, ErrFraming},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in))
			garbage := 0
			r.OnGarbage = func(error) { garbage++ }
			var got []string
			var err error
			for range 100 {
				var m Message
				if m, err = r.Next(); err != nil {
					break
				}
				got = append(got, m.Get("event"))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("blocks %q, want %q", got, tt.want)
			}
			if !errors.Is(err, tt.finalErr) {
				t.Errorf("final error %v, want %v", err, tt.finalErr)
			}
			if garbage != tt.garbage {
				t.Errorf("%d garbage reports, want %d", garbage, tt.garbage)
			}
		})
	}
}

// want is the transcript's mapped events: model, then fields each must have.
var want = []struct {
	model  string
	fields map[string]any
}{
	{"call", map[string]any{"event": "start", "orig_callid": "1733540000.1", "callid": "1733540000.1", "domain": "example.com", "user": "1001", "orig_to_user": "2002", "call-state": "down"}},
	{"call", map[string]any{"event": "update", "call-state": "ring"}},
	{"call", map[string]any{"event": "answer", "call-state": "up", "user": []any{"1001", "2002"}}},
	{"call", map[string]any{"event": "bridge", "bridgeuniqueid": "5d7c1d1c-2b0e-4b0e-9d35-0a0a0a0a0a0a"}},
	{"call", map[string]any{"event": "end", "remove": "yes", "cause-txt": "Normal Clearing"}},
	{"cdr", map[string]any{"from": "1001", "to": "2002", "duration": float64(60), "total_duration": float64(64), "disposition": "answered", "orig_callid": "1733540000.1", "domain": "example.com"}},
	{"agent", map[string]any{"queue": "support", "agent": "PJSIP/2002", "user": "2002", "paused": true, "domain": "pbx.example.net"}},
	{"presence", map[string]any{"device": "PJSIP/2002", "user": "2002", "user-presence-status": "not_inuse"}},
	{"presence", map[string]any{"device": "1001", "user": "1001", "user-presence-status": "reachable"}},
	{"voicemail", map[string]any{"mailbox": "2002@default", "user": "2002", "new": float64(2), "old": float64(5), "waiting": true}},
}

func checkEvents(t *testing.T, got [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, w := range want {
		var f map[string]any
		if err := json.Unmarshal(got[i], &f); err != nil {
			t.Fatal(err)
		}
		if f["model"] != w.model || f["source"] != "ami" {
			t.Errorf("event %d: model %v source %v, want %s ami", i, f["model"], f["source"], w.model)
		}
		for k, v := range w.fields {
			if fmt.Sprint(f[k]) != fmt.Sprint(v) {
				t.Errorf("event %d (%s): %s = %v, want %v", i, w.model, k, f[k], v)
			}
		}
	}
}

func TestMapTranscript(t *testing.T) {
	r := NewReader(strings.NewReader(transcript(t)))
	mp := Mapping{Domain: "pbx.example.net"}
	var got [][]byte
	for {
		m, err := r.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		if ev := mp.Map(m); ev != nil {
			got = append(got, ev)
		}
	}
	checkEvents(t, got)
}

func TestMapIgnoresResponsesAndReservedKeys(t *testing.T) {
	mp := Mapping{}
	if ev := mp.Map(Message{{"Response", "Success"}}); ev != nil {
		t.Errorf("a response mapped to %s", ev)
	}
	ev := mp.Map(Message{{"Event", "DeviceStateChange"}, {"Device", "SIP/7"}, {"State", "INUSE"}, {"Domain", "evil"}, {"Event-ID", "x"}, {"Model", "y"}})
	var f map[string]any
	if err := json.Unmarshal(ev, &f); err != nil {
		t.Fatal(err)
	}
	if f["model"] != "presence" || f["domain"] != nil || f["event-id"] != nil {
		t.Errorf("reserved keys leaked from AMI: %v", f)
	}
}

type memLog struct {
	mu     sync.Mutex
	bodies [][]byte
}

func (m *memLog) Append(_ context.Context, es []eventlog.Entry) (uint64, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range es {
		m.bodies = append(m.bodies, append([]byte(nil), e.Body...))
	}
	return uint64(len(m.bodies)), 0, nil
}

func (m *memLog) all() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([][]byte(nil), m.bodies...)
}

// fakeAMI serves one script per connection.
type fakeAMI struct {
	ln     net.Listener
	logins chan [2]string // username, secret of each login
}

// script is what one connection does after the banner: answer the login
// (ok or not), then write body in pieces of 5 bytes and close.
type script struct {
	loginOK bool
	body    string
}

func newFakeAMI(t *testing.T, scripts []script) *fakeAMI {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAMI{ln: ln, logins: make(chan [2]string, len(scripts)+1)}
	go func() {
		for _, s := range scripts {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.serve(c, s)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeAMI) serve(c net.Conn, s script) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "Asterisk Call Manager/5.0.1\r\n"); err != nil {
		return
	}
	r := NewReader(bufio.NewReader(c))
	m, err := r.Next()
	if err != nil || m.Get("Action") != "Login" || m.Get("Events") != "on" {
		return
	}
	f.logins <- [2]string{m.Get("Username"), m.Get("Secret")}
	id := m.Get("ActionID")
	if !s.loginOK {
		_, _ = io.WriteString(c, "Response: Error\r\nActionID: "+id+"\r\nMessage: Authentication failed\r\n\r\n")
		return
	}
	_, _ = io.WriteString(c, "Response: Success\r\nActionID: "+id+"\r\nMessage: Authentication accepted\r\n\r\n")
	for b := s.body; len(b) > 0; {
		n := min(5, len(b))
		if _, err := io.WriteString(c, b[:n]); err != nil {
			return
		}
		b = b[n:]
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

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestClientTranscript(t *testing.T) {
	tr := transcript(t)
	// Split the transcript inside the Cdr block: the first connection ends
	// there (a disconnect mid-message); the second sends the rest again
	// from the Cdr on, as Asterisk would send new events.
	cut := strings.Index(tr, "Event: Cdr")
	first := tr[:cut] + "Event: Cdr\r\nPrivilege: cdr,all\r\nSour"
	// Garbage lines inside and between blocks of the first connection.
	first = strings.Replace(first, "Event: Newchannel\r\n", "@@@ junk @@@\r\nEvent: Newchannel\r\nnot a field\r\n", 1)
	first = strings.Replace(first, "Event: BridgeEnter", "\x00\x01\x02\r\n\r\nEvent: BridgeEnter", 1)
	second := tr[cut:]
	const secret = "s3cr3t-p4ss"
	srv := newFakeAMI(t, []script{{loginOK: false}, {loginOK: true, body: first}, {loginOK: true, body: second}})
	log := &memLog{}
	var logs syncBuffer
	c := New(Options{
		Addr: srv.ln.Addr().String(), Username: "hookswitch", Secret: secret, Log: log,
		Mapping: Mapping{Domain: "pbx.example.net"},
		Logger:  slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Backoff: source.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}()
	waitFor(t, "all events", func() bool { return len(log.all()) >= len(want) })
	checkEvents(t, log.all())
	for i := range 3 {
		if l := <-srv.logins; l != [2]string{"hookswitch", secret} {
			t.Errorf("login %d: %q", i, l)
		}
	}
	st := c.Status()
	if st.Connects != 2 || st.EventsRead != 12 || st.EventsAppended != uint64(len(want)) || st.EventsDropped != 0 {
		t.Errorf("status %+v: want 2 connects, 12 read, %d appended", st, len(want))
	}
	// The failed login, two blocks with garbage, the truncated message,
	// the end of the last connection.
	if st.Errors < 4 {
		t.Errorf("status %+v: want at least 4 errors", st)
	}
	out := logs.String()
	for _, s := range []string{"AMI login failed", "Authentication failed", "garbage from AMI skipped", "truncated"} {
		if !strings.Contains(out, s) {
			t.Errorf("the log does not mention %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, secret) || strings.Contains(fmt.Sprint(st), secret) {
		t.Errorf("the secret appears in the log or the status")
	}
}

func TestClientNotAMI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n")
			c.Close()
		}
	}()
	c := New(Options{Addr: ln.Addr().String(), Log: &memLog{}, Logger: slog.New(slog.DiscardHandler),
		Backoff: source.Backoff{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	waitFor(t, "two failures", func() bool { return c.Status().Errors >= 2 })
	cancel()
	<-done
	if st := c.Status(); st.Connects != 0 || !strings.Contains(st.LastError, "not the Asterisk Manager Interface") {
		t.Errorf("status %+v", st)
	}
}
