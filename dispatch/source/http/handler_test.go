package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

func TestIngestAccepted(t *testing.T) {
	l := newLog(t)
	var accepted atomic.Int64
	url := newServer(t, Options{Log: l, OnAccepted: func(n int) { accepted.Add(int64(n)) }})
	inc := l.Incarnation()

	tests := []struct {
		name   string
		ct     string
		body   string
		models []string
		stored []string // bodies as the log must hold them
	}{
		{"object", "application/json", `{"model":"call","domain":"d","n":1}`,
			[]string{"call"}, []string{`{"model":"call","domain":"d","n":1}`}},
		{"object compacted, order and values kept", "application/json; charset=utf-8",
			"{ \"z\" : 1.50 ,\n \"model\" : \"cdr\", \"s\" : \"\\u00e9<&>\" }",
			[]string{"cdr"}, []string{`{"z":1.50,"model":"cdr","s":"\u00e9<&>"}`}},
		{"array", "application/json", ` [ {"model":"call","i":0} ,{"model":"cdr","i":1},
			{"model":"agent","user":["a","b"],"x":{"y":["]","}","\"",","]}} ] `,
			[]string{"call", "cdr", "agent"},
			[]string{`{"model":"call","i":0}`, `{"model":"cdr","i":1}`, `{"model":"agent","user":["a","b"],"x":{"y":["]","}","\"",","]}}`}},
		{"array of one", "application/json", `[{"model":"call"}]`, []string{"call"}, []string{`{"model":"call"}`}},
		{"form, class stands for model", "application/x-www-form-urlencoded",
			"class=call&event=start&domain=example.com&user=100&user=101",
			[]string{"call"}, []string{`{"class":"call","domain":"example.com","event":"start","model":"call","user":["100","101"]}`}},
		{"form with model", "application/x-www-form-urlencoded; charset=UTF-8", "model=cdr&class=x&duration=12",
			[]string{"cdr"}, []string{`{"class":"x","duration":"12","model":"cdr"}`}},
		{"reserved fields replaced", "application/json",
			`{"event-id":"forged-1","model":"call","node":"evil","ingest-time":1,"x":"y"}`,
			[]string{"call"}, []string{`{"model":"call","x":"y"}`}},
		{"reserved fields replaced in an array", "application/json",
			`[{"model":"call","event-id":"forged-1"},{"node":"evil","model":"cdr","ingest-time":"0"}]`,
			[]string{"call", "cdr"}, []string{`{"model":"call"}`, `{"model":"cdr"}`}},
		{"reserved form fields replaced", "application/x-www-form-urlencoded", "class=call&event-id=forged&node=evil&ingest-time=1",
			[]string{"call"}, []string{`{"class":"call","model":"call"}`}},
		{"no Content-Type, object sniffed", "", "\n {\"model\":\"call\"}", []string{"call"}, []string{`{"model":"call"}`}},
		{"text/plain, array sniffed", "text/plain; charset=utf-8", `[{"model":"call"}]`, []string{"call"}, []string{`{"model":"call"}`}},
		{"+json media type", "application/vnd.hookswitch+json", `{"model":"call"}`, []string{"call"}, []string{`{"model":"call"}`}},
		{"case-insensitive media type", "Application/JSON", `{"model":"call"}`, []string{"call"}, []string{`{"model":"call"}`}},
		{"byte order mark", "application/json", "\xef\xbb\xbf{\"model\":\"call\"}", []string{"call"}, []string{`{"model":"call"}`}},
		// curl -d sends JSON as application/x-www-form-urlencoded.
		{"JSON object with a form Content-Type", "application/x-www-form-urlencoded", " {\"model\":\"call\",\"a\":1}",
			[]string{"call"}, []string{`{"model":"call","a":1}`}},
		{"JSON array with a form Content-Type", "application/x-www-form-urlencoded", `[{"class":"call"},{"model":"cdr"}]`,
			[]string{"call", "cdr"}, []string{`{"class":"call","model":"call"}`, `{"model":"cdr"}`}},
	}
	total := int64(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Stats()
			r := post(t, url, tt.ct, tt.body)
			first := wantAccepted(t, r, len(tt.stored), inc)
			if first != before.LastSeq+1 {
				t.Fatalf("first seq %d, want %d", first, before.LastSeq+1)
			}
			wantStored(t, l, first, tt.models, tt.stored)
			for _, b := range tt.stored {
				for _, f := range []string{dispatch.FieldEventID, dispatch.FieldNode, dispatch.FieldIngestTime} {
					if strings.Contains(b, `"`+f+`"`) {
						t.Fatalf("stored body %s holds %q", b, f)
					}
				}
			}
			total += int64(len(tt.stored))
			if got := accepted.Load(); got != total {
				t.Fatalf("OnAccepted total %d, want %d", got, total)
			}
		})
	}
}

func TestIngestRejected(t *testing.T) {
	l := newLog(t)
	var logs logBuffer
	var accepted atomic.Int64
	url := newServer(t, Options{Log: l, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnAccepted: func(n int) { accepted.Add(int64(n)) }})
	// Something stored first, so "unchanged" is not just "empty".
	wantAccepted(t, post(t, url, "application/json", `[{"model":"call"},{"model":"cdr"}]`), 2, l.Incarnation())
	accepted.Store(0)

	big := `{"model":"call","x":"` + strings.Repeat("a", dispatch.MaxEventBytes) + `"}`
	tests := []struct {
		name   string
		ct     string
		body   string
		status int
		msg    string // part of the error
		field  string
		index  int // -1: none
	}{
		{"malformed JSON object", "application/json", `{"model":"call",}`, 400, "event 0: invalid JSON", "", 0},
		{"truncated object", "application/json", `{"model":"call"`, 400, "unexpected end", "", 0},
		{"two objects", "application/json", `{"model":"call"} {"model":"cdr"}`, 400, "data after the object", "", 0},
		{"malformed JSON in an array", "application/json", `[{"model":"call"},{"model":"call",,}]`, 400, "event 1: invalid JSON", "", 1},
		{"truncated array element", "application/json", `[{"model":"call"},{"model":"ca`, 400, "event 1: invalid JSON: unexpected end", "", 1},
		{"unterminated array", "application/json", `[{"model":"call"}`, 400, "unexpected end of input after event 0", "", -1},
		{"missing comma", "application/json", `[{"model":"call"} {"model":"cdr"}]`, 400, "expected ',' or ']' after event 0", "", -1},
		{"trailing comma", "application/json", `[{"model":"call"},]`, 400, "expected an event", "", -1},
		{"leading comma", "application/json", `[,{"model":"call"}]`, 400, "expected an event", "", -1},
		{"data after the array", "application/json", `[{"model":"call"}] x`, 400, "data after the array", "", -1},
		{"two arrays", "application/json", `[{"model":"call"}][{"model":"call"}]`, 400, "data after the array", "", -1},
		{"number", "application/json", `5`, 400, "one JSON object or an array", "", -1},
		{"string", "application/json", `"call"`, 400, "one JSON object or an array", "", -1},
		{"null", "application/json", `null`, 400, "one JSON object or an array", "", -1},
		{"not JSON at all", "application/json", `model=call`, 400, "one JSON object or an array", "", -1},
		{"empty body", "application/json", ``, 400, "empty body", "", -1},
		{"blank body", "", " \n\t", 400, "empty body", "", -1},
		{"empty array", "application/json", ` [ ] `, 400, "empty array", "", -1},
		{"array holding a number", "application/json", `[{"model":"call"},{"model":"cdr"},5]`, 400, "event 2: event must be a JSON object", "", 2},
		{"array holding an array", "application/json", `[[{"model":"call"}]]`, 400, "event 0: event must be a JSON object", "", 0},
		{"array holding null", "application/json", `[{"model":"call"},null]`, 400, "event 1: event must be a JSON object", "", 1},
		{"event without model", "application/json", `[{"model":"call"},{"x":1}]`, 400, "event 1: model is required", "model", 1},
		{"object without model", "application/json", `{"x":1}`, 400, "event 0: model is required", "model", 0},
		{"model malformed", "application/json", `{"model":"Call-Start"}`, 400, "must match", "model", 0},
		{"model not a string", "application/json", `[{"model":"call"},{"model":"cdr"},{"model":"a"},{"model":7}]`, 400, "event 3: model must be a string", "model", 3},
		{"class malformed", "application/json", `{"class":"9x"}`, 400, "class", "class", 0},
		{"domain not a string", "application/json", `{"model":"call","domain":{"a":1}}`, 400, "domain must be a string or an array of strings", "domain", 0},
		{"duplicate field", "application/json", `{"model":"call","a":1,"a":2}`, 400, "duplicate field", "a", 0},
		{"nested deeper than delivery decodes", "application/json",
			`[{"model":"call"},{"model":"call","a":` + strings.Repeat("[", dispatch.MaxEventDepth) + strings.Repeat("]", dispatch.MaxEventDepth) + `}]`,
			400, `event 1: field "a" makes the event nest 33 levels deep, more than the limit of 32`, "a", 1},
		{"nested as deep as encoding/json allows", "application/json",
			`{"model":"call","a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
			400, "more than the limit of 32", "a", 0},
		{"nested deeper than encoding/json reads", "application/json",
			`{"model":"call","a":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
			400, "more than the limit of 32", "", 0},
		{"invalid UTF-8", "application/json", "[{\"model\":\"call\",\"x\":\"\xff\"}]", 400, "event 0: event is not valid UTF-8", "", 0},
		{"oversize event in an array", "application/json",
			`[{"model":"call"},{"model":"call"},{"model":"call"},` + big + `,{"model":"call"}]`,
			400, "event 3: event is", "", 3},
		{"form without model", "application/x-www-form-urlencoded", "event=start", 400, "event 0: model is required", "model", 0},
		{"form with a bad class", "application/x-www-form-urlencoded", "class=Bad+Class", 400, `event 0: model "Bad Class" must match`, "model", 0},
		{"empty form", "application/x-www-form-urlencoded", "", 400, "model is required", "model", 0},
		{"malformed form", "application/x-www-form-urlencoded", "class=call&x=%zz", 400, "malformed form body", "", -1},
		{"malformed JSON with a form Content-Type", "application/x-www-form-urlencoded", `{"model":"call",}`, 400, "event 0: invalid JSON", "", 0},
		{"wrong content type", "application/xml", `<event model="call"/>`, 415, `Content-Type "application/xml" is not supported`, "", -1},
		{"wrong content type with JSON in it", "application/octet-stream", `{"model":"call"}`, 415, "not supported", "", -1},
		{"multipart", "multipart/form-data; boundary=x", "--x--", 415, "not supported", "", -1},
		{"JSON not in UTF-8", "application/json; charset=iso-8859-1", `{"model":"call"}`, 415, "not supported", "", -1},
		{"text/plain that is not JSON", "text/plain", `model=call`, 415, "not supported", "", -1},
		{"no Content-Type and not JSON", "", `model=call`, 415, "no Content-Type and a body that is not JSON", "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Stats()
			r := post(t, url, tt.ct, tt.body)
			wantError(t, r, tt.status, tt.msg, tt.field, tt.index)
			if after := l.Stats(); after.Records != before.Records || after.LastSeq != before.LastSeq || after.Appends != before.Appends {
				t.Fatalf("log changed by a refused request: %+v -> %+v", before, after)
			}
		})
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("OnAccepted counted %d events of refused requests", n)
	}
	if s := logs.String(); strings.Contains(s, "level=ERROR") || !strings.Contains(s, "component=ingest") {
		t.Fatalf("refusals should be debug lines of component=ingest, got:\n%s", s)
	}
}

// TestIngestLimits covers the size and count limits with a real log.
func TestIngestLimits(t *testing.T) {
	l := newLog(t)
	url := newServer(t, Options{Log: l})
	inc := l.Incarnation()

	fiveMiB := `[{"model":"call","x":"` + strings.Repeat("a", 5<<20) + `"}]`
	overCount := arrayOf(MaxEvents + 1)
	if len(overCount) > MaxBodyBytes {
		t.Fatalf("test body of %d events is %d bytes, over the body limit", MaxEvents+1, len(overCount))
	}
	justOver := `{"model":"call","x":"` + strings.Repeat("a", MaxBodyBytes-len(`{"model":"call","x":""}`)+1) + `"}`

	refused := []struct {
		name   string
		body   io.Reader
		status int
		msg    string
	}{
		{"5 MiB body with Content-Length", strings.NewReader(fiveMiB), 413, "larger than the limit of 4194304 bytes"},
		{"5 MiB body chunked", io.MultiReader(strings.NewReader(fiveMiB)), 413, "larger than the limit of 4194304 bytes"},
		{"one byte over the limit, chunked", io.MultiReader(strings.NewReader(justOver)), 413, "larger than the limit"},
		{"10,001 events", strings.NewReader(overCount), 413, "more than 10000 events in one request"},
		{"10,001 events chunked", io.MultiReader(strings.NewReader(overCount)), 413, "more than 10000 events"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Stats()
			r := do(t, http.MethodPost, url, "application/json", tt.body)
			wantError(t, r, tt.status, tt.msg, "", -1)
			if after := l.Stats(); after.Records != before.Records || after.LastSeq != before.LastSeq || after.Appends != before.Appends {
				t.Fatalf("log changed by a refused request: %+v -> %+v", before, after)
			}
		})
	}

	t.Run("exactly 10,000 events", func(t *testing.T) {
		before := l.Stats()
		r := post(t, url, "application/json", arrayOf(MaxEvents))
		first := wantAccepted(t, r, MaxEvents, inc)
		after := l.Stats()
		if after.Records != before.Records+MaxEvents || after.Appends != before.Appends+1 {
			t.Fatalf("stats %+v -> %+v: want %d more records in one Append", before, after, MaxEvents)
		}
		recs, err := l.Read(first+MaxEvents-1, 2)
		if err != nil || len(recs) != 1 || string(recs[0].Body) != fmt.Sprintf(`{"model":"call","i":%d}`, MaxEvents-1) {
			t.Fatalf("last record: %v %+v", err, recs)
		}
	})

	t.Run("exactly 4 MiB body", func(t *testing.T) {
		exact := `{"model":"call","x":"` + strings.Repeat("a", MaxBodyBytes-len(`{"model":"call","x":""}`)) + `"}`
		if len(exact) != MaxBodyBytes {
			t.Fatal(len(exact))
		}
		// Under the body limit but one event of 4 MiB: refused for its size.
		r := do(t, http.MethodPost, url, "application/json", io.MultiReader(strings.NewReader(exact)))
		wantError(t, r, 400, "event 0: event is", "", 0)
	})

	t.Run("event of exactly 64 KiB", func(t *testing.T) {
		fill := dispatch.MaxEventBytes - len(`{"model":"call","x":""}`)
		ok := `{"model":"call","x":"` + strings.Repeat("a", fill) + `"}`
		over := `{"model":"call","x":"` + strings.Repeat("a", fill+1) + `"}`
		wantAccepted(t, post(t, url, "application/json", "[ "+ok+" ]"), 1, inc)
		wantError(t, post(t, url, "application/json", `[{"model":"call"},`+over+`]`), 400, "event 1: event is 65537 bytes, more than the limit of 65536", "", 1)
	})
}

func TestContentEncoding(t *testing.T) {
	f := &fakeLog{}
	url := newServer(t, Options{Log: f})
	for _, tt := range []struct {
		enc    string
		status int
	}{{"gzip", 415}, {"br", 415}, {"identity", 202}} {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"model":"call"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Content-Encoding", tt.enc)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		r := reply{status: res.StatusCode, header: res.Header, body: b}
		if tt.status == 202 {
			wantAccepted(t, r, 1, f.Incarnation())
		} else {
			wantError(t, r, tt.status, "Content-Encoding", "", -1)
		}
	}
	if f.calls != 1 {
		t.Fatalf("Append calls %d, want 1", f.calls)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	f := &fakeLog{}
	url := newServer(t, Options{Log: f})
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		t.Run(m, func(t *testing.T) {
			r := do(t, m, url, "application/json", strings.NewReader(`{"model":"call"}`))
			wantError(t, r, http.StatusMethodNotAllowed, "use POST", "", -1)
			if got := r.header.Get("Allow"); got != http.MethodPost {
				t.Fatalf("Allow %q", got)
			}
		})
	}
	// HEAD has no body to carry the error; only the status and Allow.
	r := do(t, http.MethodHead, url, "", nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodPost {
		t.Fatalf("HEAD: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	if f.calls != 0 {
		t.Fatalf("Append called %d times", f.calls)
	}
}

func TestAuthorizer(t *testing.T) {
	l := newLog(t)
	var seen atomic.Pointer[http.Request]
	authz := func(r *http.Request) (int, string, bool) {
		seen.Store(r)
		switch r.Header.Get("Authorization") {
		case "Bearer ingest":
			return 0, "", true
		case "":
			return http.StatusUnauthorized, "missing token", false
		case "Bearer weird":
			return 200, "", false // not an error status: must become 403
		default:
			return http.StatusForbidden, "the token lacks the ingest role", false
		}
	}
	url := newServer(t, Options{Log: l, Authorize: authz})
	send := func(token, body string) reply {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return reply{status: res.StatusCode, header: res.Header, body: b}
	}
	tests := []struct {
		name, token, body string
		status            int
		msg               string
	}{
		{"no token", "", `{"model":"call"}`, 401, "missing token"},
		{"no token and a body over the limit", "", `[` + strings.Repeat(" ", MaxBodyBytes) + `]`, 401, "missing token"},
		{"no token and an invalid body", "", `{`, 401, "missing token"},
		{"wrong role", "read", `{"model":"call"}`, 403, "lacks the ingest role"},
		{"bogus refusal status", "weird", `{"model":"call"}`, 403, "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Stats()
			r := send(tt.token, tt.body)
			wantError(t, r, tt.status, tt.msg, "", -1)
			if tt.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="hookswitch"` {
				t.Fatalf("401 without WWW-Authenticate: %q", r.header.Get("WWW-Authenticate"))
			}
			if l.Stats().Appends != before.Appends {
				t.Fatal("refused request reached the log")
			}
		})
	}
	r := send("ingest", `{"model":"call"}`)
	wantAccepted(t, r, 1, l.Incarnation())
	if req := seen.Load(); req == nil || !strings.HasPrefix(req.RemoteAddr, "127.0.0.1:") {
		t.Fatalf("authorizer did not see the remote address: %v", req)
	}
}

func TestAppendFails(t *testing.T) {
	t.Run("appender error", func(t *testing.T) {
		var logs logBuffer
		f := &fakeLog{err: errors.New("disk on fire")}
		var accepted atomic.Int64
		url := newServer(t, Options{Log: f, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			OnAccepted: func(n int) { accepted.Add(int64(n)) }})
		r := post(t, url, "application/json", `[{"model":"call"},{"model":"cdr"}]`)
		e := wantError(t, r, http.StatusServiceUnavailable, "could not store the events", "", -1)
		if strings.Contains(e.Error, "disk on fire") {
			t.Fatalf("internal error leaked to the client: %q", e.Error)
		}
		if r.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
		s := logs.String()
		for _, want := range []string{"level=ERROR", "component=ingest", "events=2", `err="disk on fire"`} {
			if !strings.Contains(s, want) {
				t.Fatalf("log lacks %q:\n%s", want, s)
			}
		}
		if f.calls != 1 || accepted.Load() != 0 {
			t.Fatalf("Append calls %d, accepted %d", f.calls, accepted.Load())
		}
	})
	t.Run("disk full", func(t *testing.T) {
		var logs logBuffer
		f := &fakeLog{err: fmt.Errorf("%w: commit: write events.db: no space left on device", eventlog.ErrNoSpace)}
		url := newServer(t, Options{Log: f, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		for range 3 {
			r := post(t, url, "application/json", `{"model":"call"}`)
			wantError(t, r, http.StatusInsufficientStorage, "disk under the event log is full", "", -1)
			if r.header.Get("Retry-After") == "" {
				t.Fatal("507 without Retry-After")
			}
		}
		// The event log logs the episode once; the handler adds nothing
		// per request.
		if s := logs.String(); s != "" {
			t.Fatalf("the handler logged a full disk per request:\n%s", s)
		}
	})
	t.Run("closed event log", func(t *testing.T) {
		l := newLog(t)
		url := newServer(t, Options{Log: l})
		wantAccepted(t, post(t, url, "application/json", `{"model":"call"}`), 1, l.Incarnation())
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		wantError(t, post(t, url, "application/json", `{"model":"call"}`), http.StatusServiceUnavailable, "retry", "", -1)
	})
}

// barrierLog holds every Append until n of them are waiting, then lets them
// all into the real log at once: the committer then finds many calls queued
// and must merge them. If the handler serialised its Append calls, the
// barrier would never fill and the test would time out.
type barrierLog struct {
	*eventlog.Log
	n       int
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func (b *barrierLog) Append(ctx context.Context, e []eventlog.Entry) (uint64, int64, error) {
	b.mu.Lock()
	b.waiting++
	if b.waiting == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(20 * time.Second):
		return 0, 0, errors.New("barrier: not all requests reached Append concurrently")
	}
	return b.Log.Append(ctx, e)
}

func TestConcurrentRequests(t *testing.T) {
	const requests = 50
	for _, barrier := range []bool{true, false} {
		t.Run(fmt.Sprintf("barrier=%v", barrier), func(t *testing.T) {
			l := newLog(t)
			var app Appender = l
			if barrier {
				app = &barrierLog{Log: l, n: requests, open: make(chan struct{})}
			}
			url := newServer(t, Options{Log: app})
			type result struct {
				first uint64
				n     int
			}
			results := make([]result, requests)
			var wg sync.WaitGroup
			errs := make(chan string, requests)
			for i := range requests {
				wg.Go(func() {
					n := i%7 + 1
					var b strings.Builder
					b.WriteByte('[')
					for j := range n {
						if j > 0 {
							b.WriteByte(',')
						}
						fmt.Fprintf(&b, `{"model":"call","req":%d,"j":%d}`, i, j)
					}
					b.WriteByte(']')
					res, err := http.Post(url, "application/json", strings.NewReader(b.String()))
					if err != nil {
						errs <- err.Error()
						return
					}
					defer res.Body.Close()
					body, _ := io.ReadAll(res.Body)
					var a accepted
					if res.StatusCode != 202 || json.Unmarshal(body, &a) != nil || len(a.EventIDs) != n {
						errs <- fmt.Sprintf("request %d: %d %s", i, res.StatusCode, body)
						return
					}
					var first uint64
					for k, id := range a.EventIDs {
						inc, seq, err := dispatch.ParseEventID(id)
						if err != nil || inc != l.Incarnation() || (k > 0 && seq != first+uint64(k)) {
							errs <- fmt.Sprintf("request %d: id %d %q not contiguous", i, k, id)
							return
						}
						if k == 0 {
							first = seq
						}
					}
					results[i] = result{first, n}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			if t.Failed() {
				return
			}
			// Distinct ids: the requests' ranges tile 1..total exactly, and
			// every record is the event the ids say it is.
			owner := map[uint64]int{}
			total := 0
			for i, r := range results {
				total += r.n
				for k := range r.n {
					seq := r.first + uint64(k)
					if o, dup := owner[seq]; dup {
						t.Fatalf("seq %d given to requests %d and %d", seq, o, i)
					}
					owner[seq] = i
				}
			}
			recs, err := l.Read(1, total+1)
			if err != nil || len(recs) != total {
				t.Fatalf("read %d records (%v), want %d", len(recs), err, total)
			}
			for _, rec := range recs {
				i, ok := owner[rec.Seq]
				if !ok {
					t.Fatalf("record %d belongs to no request", rec.Seq)
				}
				want := fmt.Sprintf(`{"model":"call","req":%d,"j":%d}`, i, rec.Seq-results[i].first)
				if string(rec.Body) != want {
					t.Fatalf("record %d: %s, want %s", rec.Seq, rec.Body, want)
				}
			}
			s := l.Stats()
			t.Logf("%d requests, %d events: %d commits", requests, total, s.Commits)
			if s.Appends != requests {
				t.Fatalf("%d Append calls, want one per request (%d)", s.Appends, requests)
			}
			if barrier && s.Commits >= requests {
				t.Fatalf("%d commits for %d concurrent requests: no group commit", s.Commits, requests)
			}
		})
	}
}

// TestClientGone checks that a request whose client disconnects while its
// Append is pending is not answered 202, and is logged.
func TestClientGone(t *testing.T) {
	var logs logBuffer
	entered := make(chan struct{})
	app := &blockingLog{entered: entered}
	h := New(Options{Log: app, Authorize: AllowAll, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/events", strings.NewReader(`{"model":"call"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(rec, req) }()
	<-entered
	cancel()
	<-done
	if rec.Code == http.StatusAccepted {
		t.Fatal("answered 202 although Append did not return success")
	}
	if !strings.Contains(logs.String(), "outcome unknown") {
		t.Fatalf("no log line:\n%s", logs.String())
	}
}

type blockingLog struct{ entered chan struct{} }

func (b *blockingLog) Append(ctx context.Context, _ []eventlog.Entry) (uint64, int64, error) {
	close(b.entered)
	<-ctx.Done()
	return 0, 0, ctx.Err()
}

func (b *blockingLog) Incarnation() string { return "x" }

func TestAcceptedBodyMatchesEventID(t *testing.T) {
	for _, inc := range []string{"0123456789abcdef", "a-b-c", `we"ird\`, "é", ""} {
		for _, first := range []uint64{0, 1, 9, 10, 1<<64 - 3} {
			out := appendAccepted(nil, inc, first, 3)
			var a accepted
			if err := json.Unmarshal(out, &a); err != nil {
				t.Fatalf("%q %d: %s: %v", inc, first, out, err)
			}
			if a.Accepted != 3 || len(a.EventIDs) != 3 {
				t.Fatalf("%s", out)
			}
			for i, id := range a.EventIDs {
				if want := dispatch.EventID(inc, first+uint64(i)); id != want {
					t.Fatalf("id %q, want dispatch.EventID %q", id, want)
				}
			}
		}
	}
}

func TestNewPanicsWithoutLogOrAuthorizer(t *testing.T) {
	for name, opts := range map[string]Options{
		"no log":        {Authorize: AllowAll},
		"no authorizer": {Log: &fakeLog{}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("New did not panic")
				}
			}()
			New(opts)
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		ct   string
		want bodyKind
	}{
		{"", kindSniff},
		{"application/json", kindJSON},
		{" application/json ; charset=\"UTF-8\"", kindJSON},
		{"application/json;charset=utf8", kindJSON},
		{"application/json; charset=us-ascii", kindJSON},
		{"application/json; charset=utf-16", kindUnsupported},
		{"application/problem+json", kindJSON},
		{"application/+json", kindUnsupported},
		{"text/plain", kindSniff},
		{"TEXT/PLAIN; charset=latin1", kindUnsupported},
		{"application/x-www-form-urlencoded", kindForm},
		{"application/x-www-form-urlencoded; charset=windows-1252", kindForm},
		{"multipart/form-data; boundary=x", kindUnsupported},
		{"application/jsonx", kindUnsupported},
		{"text/json", kindUnsupported},
	}
	for _, tt := range tests {
		if got := classify(tt.ct); got != tt.want {
			t.Errorf("classify(%q) = %d, want %d", tt.ct, got, tt.want)
		}
	}
}

// referenceParse is what parseArray must agree with: encoding/json's view
// of the array, then ParseIngest on each element.
func referenceParse(body []byte) ([]eventlog.Entry, bool) {
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil || len(elems) == 0 || len(elems) > MaxEvents {
		return nil, false
	}
	out := make([]eventlog.Entry, 0, len(elems))
	for _, e := range elems {
		m, b, err := dispatch.ParseIngest(e)
		if err != nil {
			return nil, false
		}
		out = append(out, eventlog.Entry{Model: m, Body: b})
	}
	return out, true
}

func checkSplitAgrees(t *testing.T, in []byte) {
	body := trimBOM(trimLeftSpace(in))
	if len(body) == 0 || body[0] != '[' {
		return
	}
	got, rerr := parseArray(body, nil)
	want, ok := referenceParse(body)
	if ok != (rerr == nil) {
		t.Fatalf("%q: parseArray error %v, encoding/json+ParseIngest ok=%v", in, rerr, ok)
	}
	if !ok {
		if rerr.status != 400 && rerr.status != 413 {
			t.Fatalf("%q: status %d", in, rerr.status)
		}
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%q: %d events, want %d", in, len(got), len(want))
	}
	for i := range got {
		if got[i].Model != want[i].Model || !bytes.Equal(got[i].Body, want[i].Body) {
			t.Fatalf("%q: event %d %q %s, want %q %s", in, i, got[i].Model, got[i].Body, want[i].Model, want[i].Body)
		}
	}
}

var splitSeeds = []string{
	`[]`, `[ ]`, `[{"model":"a"}]`, `[{"model":"a"},{"model":"b"}]`, `[{"model":"a"} , {"model":"b"} ]`,
	`[{"model":"a","s":"]},[{\""}]`, `[{"model":"a","s":"\\"}]`, `[{"model":"a","s":"\\\"]"}]`,
	`[{"model":"a","o":{"x":[1,{"y":"}"}]}}]`, `[{"model":"a"},]`, `[,{"model":"a"}]`, `[{"model":"a"}{"model":"b"}]`,
	`[{"model":"a"}] `, `[{"model":"a"}]]`, `[{"model":"a"}}]`, `[{"model":"a"]`, `[{"model":"a"`, `[`, `[{`,
	`[{"model":"a"},5]`, `[5]`, `["x"]`, `[null]`, `[[]]`, `[{"model":"a"} 5]`, `[5 {"model":"a"}]`,
	`[{"model":"a","x":[}]]`, `[{"model":"a","x":{]}]`, `[{"model":"a",}]`, `[{"model":"a"},,{"model":"b"}]`,
	"[{\"model\":\"a\",\"x\":\"\xff\"}]", "[\n\t{\"model\":\"a\"}\r\n]", `[{"model":"a","model":"b"}]`,
	`[{"model":"a","s":"unterminated}]`, `[{"model":"a"}]x`, `[{"model":"a"}]{}`, `[{"model":"a","x":"\"}]"}]`,
}

func TestSplitAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range splitSeeds {
		checkSplitAgrees(t, []byte(s))
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range splitSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkSplitAgrees)
}

// TestPooledStateDoesNotLeak alternates refused and accepted requests on one
// handler: nothing of a refused request may reach a later Append.
func TestPooledStateDoesNotLeak(t *testing.T) {
	f := &fakeLog{}
	url := newServer(t, Options{Log: f})
	for i := range 20 {
		wantError(t, post(t, url, "application/json", `[{"model":"a"},{"model":"b"},{"model":"c"},5]`), 400, "event 3", "", 3)
		wantAccepted(t, post(t, url, "application/json", `[{"model":"ok"}]`), 1, f.Incarnation())
		if f.calls != i+1 || f.entries != i+1 {
			t.Fatalf("round %d: %d Append calls with %d entries, want %d and %d", i, f.calls, f.entries, i+1, i+1)
		}
	}
}
