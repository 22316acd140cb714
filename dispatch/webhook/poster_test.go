package webhook

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

func newTestPoster(o PosterOptions) *Poster {
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.Version == "" {
		o.Version = "1.2.3"
	}
	return NewPoster(o)
}

func TestPostHeadersAndSignature(t *testing.T) {
	rc := newReceiver(t, nil)
	secret := NewSecret()
	p := newTestPoster(PosterOptions{})
	body := []byte(`[{"model":"call","event-id":"inc-1"}]`)
	tgt := Target{SubID: "sub-42", URL: rc.URL + "/hook?authkey=k", Secret: secret}
	before := time.Now().Unix()
	r := p.Post(context.Background(), tgt, "msg_abc", body, ContentTypeJSON)
	if !r.OK() || r.Status != http.StatusOK {
		t.Fatalf("Post = %+v", r)
	}
	got := rc.next(t)
	if string(got.body) != string(body) {
		t.Fatalf("body = %s", got.body)
	}
	h := got.header
	checks := map[string]string{
		"Content-Type":     ContentTypeJSON,
		"User-Agent":       "hookswitch/1.2.3",
		"X-Correlation-Id": "sub-42",
		"Webhook-Id":       "msg_abc",
	}
	for k, want := range checks {
		if h.Get(k) != want {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), want)
		}
	}
	ts, err := strconv.ParseInt(h.Get(HeaderWebhookTimestamp), 10, 64)
	if err != nil || ts < before || ts > time.Now().Unix() {
		t.Errorf("webhook-timestamp %q not this attempt's time", h.Get(HeaderWebhookTimestamp))
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(got.body, h); err != nil {
		t.Fatalf("official library rejects the POST: %v", err)
	}
	other, _ := standardwebhooks.NewWebhook(NewSecret())
	if err := other.Verify(got.body, h); err == nil {
		t.Fatal("a different secret verifies")
	}
	if r.Duration <= 0 {
		t.Errorf("Duration = %v", r.Duration)
	}
}

func TestPostOutcomes(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		respond    func(w http.ResponseWriter, r *http.Request)
		timeout    time.Duration
		status     int
		ok         bool
		gone       bool
		retryAfter time.Duration
		errIs      error
		snippet    string
	}{
		{name: "200", respond: func(w http.ResponseWriter, r *http.Request) {}, status: 200, ok: true},
		{name: "204", respond: status(204), status: 204, ok: true},
		{name: "202 with body", respond: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(202)
			_, _ = w.Write([]byte("queued\n"))
		}, status: 202, ok: true, snippet: "queued"},
		{name: "500 with body", respond: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom\x01\n", 500)
		}, status: 500, errIs: ErrStatus, snippet: "boom"},
		{name: "400", respond: status(400), status: 400, errIs: ErrStatus},
		{name: "302 not followed", respond: redirect(302), status: 302, errIs: ErrRedirect},
		{name: "301 not followed", respond: redirect(301), status: 301, errIs: ErrRedirect},
		{name: "307 not followed", respond: redirect(307), status: 307, errIs: ErrRedirect},
		{name: "308 not followed", respond: redirect(308), status: 308, errIs: ErrRedirect},
		{name: "304", respond: status(304), status: 304, errIs: ErrRedirect},
		{name: "410 gone", respond: status(410), status: 410, gone: true, errIs: ErrStatus},
		{name: "429 retry-after seconds", respond: retryAfter(429, "7"), status: 429, retryAfter: 7 * time.Second, errIs: ErrStatus},
		{name: "503 retry-after date", respond: retryAfter(503, now.Add(2*time.Minute).Format(http.TimeFormat)),
			status: 503, retryAfter: 2 * time.Minute, errIs: ErrStatus},
		{name: "502 retry-after clamped up", respond: retryAfter(502, "0"), status: 502, retryAfter: time.Second, errIs: ErrStatus},
		{name: "504 retry-after clamped down", respond: retryAfter(504, "86400"), status: 504, retryAfter: 10 * time.Minute, errIs: ErrStatus},
		{name: "503 without retry-after", respond: status(503), status: 503, errIs: ErrStatus},
		{name: "429 bad retry-after", respond: retryAfter(429, "later"), status: 429, errIs: ErrStatus},
		{name: "500 retry-after ignored", respond: retryAfter(500, "7"), status: 500, errIs: ErrStatus},
		{name: "big body is cut", respond: func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(strings.Repeat("x", 1<<20)))
		}, status: 200, ok: true, snippet: strings.Repeat("x", snippetBytes)},
		{name: "hang hits the timeout", respond: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, timeout: 100 * time.Millisecond, errIs: ErrTimeout},
		{name: "slow body after 2xx headers", respond: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, timeout: 100 * time.Millisecond, status: 200, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var elsewhere atomic.Int32
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					elsewhere.Add(1)
					return
				}
				tt.respond(w, r)
			})
			p := newTestPoster(PosterOptions{Now: func() time.Time { return now }})
			tgt := Target{SubID: "s", URL: rc.URL + "/hook", Secret: NewSecret(), Timeout: tt.timeout}
			r := p.Post(context.Background(), tgt, "msg_1", []byte(`[]`), ContentTypeJSON)
			if r.Status != tt.status || r.OK() != tt.ok || r.Gone != tt.gone || r.RetryAfter != tt.retryAfter {
				t.Fatalf("Post = %+v", r)
			}
			if tt.errIs != nil && !errors.Is(r.Err, tt.errIs) {
				t.Fatalf("Err = %v, want %v", r.Err, tt.errIs)
			}
			if r.BodySnippet != tt.snippet {
				t.Fatalf("BodySnippet = %q, want %q", r.BodySnippet, tt.snippet)
			}
			if elsewhere.Load() != 0 {
				t.Fatal("redirect was followed")
			}
		})
	}
}

func status(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

func redirect(code int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/elsewhere")
		w.WriteHeader(code)
	}
}

func retryAfter(code int, v string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", v)
		w.WriteHeader(code)
	}
}

// rawReceiver accepts connections on 127.0.0.1, reads one request's headers
// and hands the connection to do.
func rawReceiver(t *testing.T, do func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				br := bufio.NewReader(c)
				for { // request line and headers
					line, err := br.ReadString('\n')
					if err != nil || line == "\r\n" {
						break
					}
				}
				do(c.(*net.TCPConn))
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/hook"
}

func TestPostBrokenReceivers(t *testing.T) {
	tests := []struct {
		name string
		do   func(c *net.TCPConn)
	}{
		{"connection reset", func(c *net.TCPConn) { _ = c.SetLinger(0) }},
		{"closed without answer", func(c *net.TCPConn) {}},
		{"garbage instead of HTTP", func(c *net.TCPConn) {
			_, _ = c.Write([]byte("this is not HTTP at all\r\n\r\n"))
		}},
		{"truncated status line", func(c *net.TCPConn) { _, _ = c.Write([]byte("HTTP/1.1 2")) }},
		{"bad content-length", func(c *net.TCPConn) {
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := rawReceiver(t, tt.do)
			p := newTestPoster(PosterOptions{})
			r := p.Post(context.Background(), Target{SubID: "s", URL: u, Secret: NewSecret(), Timeout: 5 * time.Second},
				"msg_1", []byte(`[]`), ContentTypeJSON)
			if r.OK() || r.Status != 0 || r.Err == nil {
				t.Fatalf("Post = %+v, want a transport failure", r)
			}
			if errors.Is(r.Err, ErrTimeout) {
				t.Fatalf("broken receiver reported as timeout: %v", r.Err)
			}
		})
	}
}

func TestPostGuard(t *testing.T) {
	rc := newReceiver(t, nil)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.URL, "http://"))
	tests := []struct {
		name    string
		deny    string
		allow   string
		url     string
		refused string // address in the error; "" = allowed
	}{
		{"metadata v4", "", "", "http://169.254.169.254/latest/meta-data", "169.254.169.254"},
		{"link-local v6", "", "", "http://[fe80::1]:8080/hook", "fe80::1"},
		{"mapped metadata", "", "", "http://[::ffff:169.254.169.254]/", "169.254.169.254"},
		{"loopback allowed by default", "", "", rc.URL + "/hook", ""},
		{"loopback denied by config", "127.0.0.0/8,::1", "", rc.URL + "/hook", "127.0.0.1"},
		{"name checked after resolution", "127.0.0.0/8,::1", "", "http://localhost:" + port + "/hook", "127.0.0.1"},
		{"allow punches a hole", "127.0.0.0/8", "127.0.0.1", rc.URL + "/hook", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPoster(PosterOptions{Guard: NewGuard(mustPrefixes(t, tt.deny), mustPrefixes(t, tt.allow))})
			r := p.Post(context.Background(), Target{SubID: "s", URL: tt.url, Secret: NewSecret(), Timeout: 5 * time.Second},
				"msg_1", []byte(`[]`), ContentTypeJSON)
			if tt.refused == "" {
				if !r.OK() {
					t.Fatalf("Post = %+v, want success", r)
				}
				return
			}
			var re *RefusedError
			if !errors.As(r.Err, &re) || !errors.Is(r.Err, ErrRefused) {
				t.Fatalf("Err = %v (%T), want a guard refusal", r.Err, r.Err)
			}
			// localhost may resolve to ::1 first; either loopback address is a refusal of the name.
			if msg := r.Err.Error(); !strings.Contains(msg, tt.refused) && !(tt.refused == "127.0.0.1" && strings.Contains(msg, "::1")) {
				t.Fatalf("error does not name the address: %v", msg)
			}
			t.Logf("refusal: %v", r.Err)
			if !strings.Contains(r.Err.Error(), "post-url guard") {
				t.Fatalf("error is unclear: %v", r.Err)
			}
		})
	}
}

func TestPostBadInput(t *testing.T) {
	const secretPart = "s3cr3tKEY"
	tests := []struct {
		name   string
		url    string
		secret string
		errIs  error
	}{
		{"ftp scheme", "ftp://example.com/x", NewSecret(), ErrBadURL},
		{"no scheme", "example.com/hook", NewSecret(), ErrBadURL},
		{"no host", "http:///hook", NewSecret(), ErrBadURL},
		{"unparsable", "http://[::1", NewSecret(), ErrBadURL},
		{"bad secret", "http://127.0.0.1:1/", "whsec_" + secretPart + "!!", ErrBadSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPoster(PosterOptions{})
			r := p.Post(context.Background(), Target{SubID: "s", URL: tt.url, Secret: tt.secret}, "m", nil, ContentTypeJSON)
			if !errors.Is(r.Err, tt.errIs) {
				t.Fatalf("Err = %v, want %v", r.Err, tt.errIs)
			}
			if strings.Contains(r.Err.Error(), secretPart) {
				t.Fatalf("error leaks the secret: %v", r.Err)
			}
		})
	}
}

func TestPostErrorsRedactURL(t *testing.T) {
	// A port nothing listens on: the dial fails and the error names the URL.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := newTestPoster(PosterOptions{})
	u := "http://user:hunter2@" + addr + "/hook?authkey=TOPSECRET#frag"
	r := p.Post(context.Background(), Target{SubID: "s", URL: u, Secret: NewSecret()}, "m", nil, ContentTypeJSON)
	if r.Err == nil {
		t.Fatal("want a connection error")
	}
	msg := r.Err.Error()
	for _, leak := range []string{"hunter2", "TOPSECRET", "authkey", "user:"} {
		if strings.Contains(msg, leak) {
			t.Fatalf("error leaks %q: %s", leak, msg)
		}
	}
	if !strings.Contains(msg, addr+"/hook") {
		t.Fatalf("error does not say where: %s", msg)
	}
}

func TestPostCancelled(t *testing.T) {
	gate := make(chan struct{})
	rc := newReceiver(t, nil)
	rc.respond = func(n int, w http.ResponseWriter, r *http.Request) { rc.block(r, gate) }
	p := newTestPoster(PosterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan Result, 1)
	go func() {
		res <- p.Post(ctx, Target{SubID: "s", URL: rc.URL, Secret: NewSecret()}, "m", nil, ContentTypeJSON)
	}()
	rc.next(t) // in flight
	cancel()
	select {
	case r := <-res:
		if !errors.Is(r.Err, context.Canceled) || errors.Is(r.Err, ErrTimeout) {
			t.Fatalf("Err = %v, want context.Canceled", r.Err)
		}
	case <-time.After(testWait):
		t.Fatal("Post did not return after cancel")
	}
}

// TestPostRotationOverlap: during the overlap a POST carries both
// signatures, space-separated, and a receiver that knows either secret
// verifies it (the official library); after it, only the new one.
func TestPostRotationOverlap(t *testing.T) {
	rc := newReceiver(t, nil)
	oldSecret, newSecret := NewSecret(), NewSecret()
	now := time.Now()
	p := newTestPoster(PosterOptions{Now: func() time.Time { return now }})
	body := []byte(`[{"model":"call"}]`)
	for _, tt := range []struct {
		name     string
		until    time.Time
		sigs     int
		oldValid bool
	}{
		{"within the overlap", now.Add(time.Hour), 2, true},
		{"overlap over", now.Add(-time.Second), 1, false},
		{"no previous secret", time.Time{}, 1, false},
	} {
		tgt := Target{SubID: "s", URL: rc.URL + "/hook", Secret: newSecret, OldSecretUntil: tt.until}
		if !tt.until.IsZero() {
			tgt.OldSecret = oldSecret
		}
		if r := p.Post(context.Background(), tgt, "msg_rot", body, ContentTypeJSON); !r.OK() {
			t.Fatalf("%s: Post = %+v", tt.name, r)
		}
		got := rc.next(t)
		sig := got.header.Get(HeaderWebhookSignature)
		if n := len(strings.Fields(sig)); n != tt.sigs {
			t.Errorf("%s: %d signatures in %q, want %d", tt.name, n, sig, tt.sigs)
		}
		for _, c := range []struct {
			secret string
			valid  bool
		}{{newSecret, true}, {oldSecret, tt.oldValid}, {NewSecret(), false}} {
			wh, err := standardwebhooks.NewWebhook(c.secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.VerifyIgnoringTimestamp(got.body, got.header); (err == nil) != c.valid {
				t.Errorf("%s: verify with a secret (want valid=%v): %v", tt.name, c.valid, err)
			}
		}
	}
}
