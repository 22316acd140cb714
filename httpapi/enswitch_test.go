package httpapi_test

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node"
)

// syncBuffer is a log sink safe for the node's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// clientFrom returns an HTTP client whose connections come from the local
// address ip (any 127.0.0.0/8 address is loopback on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

const formCT = "application/x-www-form-urlencoded"

// TestEnswitchIngestAuthKey: Enswitch's "Send events to URL" carries only a
// URL, so a caller outside ingest-allow may pass its ingest token as
// ?authkey=; the form body is Enswitch's event; JSON sent with curl's
// default form Content-Type is read as JSON; and no token, right or wrong,
// reaches a log line (the node logs at debug level here).
func TestEnswitchIngestAuthKey(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	var secrets []string
	// Registered first, so it runs after the node's shutdown: the
	// shutdown's lines are checked too.
	t.Cleanup(func() {
		out := logs.String()
		if !strings.Contains(out, "component=ingest") || !strings.Contains(out, "ingest request refused") {
			t.Errorf("the debug log captured no ingest lines; the check below would prove nothing:\n%s", out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("a token (%.6s…) appears in the log:\n%s", s, out)
			}
		}
	})
	tn := startNodeLogging(t, func(cfg *node.Config) { cfg.IngestAllow = node.MustParseCIDRs("127.0.0.1/32") },
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	key := tn.newToken(fsm.RoleIngest, "", "", "")
	domTok := tn.newToken(fsm.RoleDomain, "", "D1", "")
	const wrongKey = "abcdefghijklmnopqrstuvwxyz123456" // Enswitch's documented example key
	secrets = []string{key, domTok, tn.root, wrongKey, url.QueryEscape(key), url.QueryEscape(tn.root)}
	since := time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)

	remote := clientFrom("127.0.0.2")
	t.Cleanup(remote.CloseIdleConnections)
	send := func(hc *http.Client, method, path, ct, body string, header http.Header) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, tn.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	withKey := func(path, k string) string { return path + "?authkey=" + url.QueryEscape(k) }
	accepted := func(what string, code int, body []byte) {
		t.Helper()
		if code != http.StatusAccepted || !bytes.Contains(body, []byte(`"accepted":1`)) {
			t.Fatalf("%s: %d %s, want 202 for one event", what, code, body)
		}
	}

	// The Enswitch event, form-encoded, from outside ingest-allow.
	code, body := send(remote, http.MethodPost, withKey("/v1/events", key), formCT,
		"class=call&event=start&callid=1234567890.100000&machine=1&timestamp=1234567890.123456", nil)
	accepted("form event with ?authkey=", code, body)
	// JSON posted as curl -d posts it (form Content-Type).
	code, body = send(remote, http.MethodPost, withKey("/v1/events", key), formCT, ` {"model":"call","event":"answer","n":2}`, nil)
	accepted("JSON with a form Content-Type", code, body)
	// The bearer header still works, and the allow-listed address needs no token.
	code, body = send(remote, http.MethodPost, "/v1/events", formCT, "class=call&event=end&n=3", http.Header{"Authorization": {"Bearer " + key}})
	accepted("bearer header", code, body)
	code, body = send(tn.hc, http.MethodPost, "/v1/events", formCT, "class=call&event=end&n=4", nil)
	accepted("127.0.0.1 without a token", code, body)

	refusals := []struct {
		what, method, path, ct, body string
		code                         int
	}{
		{"no key", http.MethodPost, "/v1/events", formCT, "class=call", http.StatusUnauthorized},
		{"wrong key", http.MethodPost, withKey("/v1/events", wrongKey), formCT, "class=call", http.StatusUnauthorized},
		{"empty key", http.MethodPost, "/v1/events?authkey=", formCT, "class=call", http.StatusUnauthorized},
		{"a domain token", http.MethodPost, withKey("/v1/events", domTok), formCT, "class=call", http.StatusForbidden},
		// Refusals after the key was accepted, and other paths with a key in
		// the URL: nothing of the URL may reach a log either.
		{"bad event", http.MethodPost, withKey("/v1/events", key), formCT, "class=Not+A+Model", http.StatusBadRequest},
		{"malformed JSON", http.MethodPost, withKey("/v1/events", key), formCT, `{"model":`, http.StatusBadRequest},
		{"GET", http.MethodGet, withKey("/v1/events", key), "", "", http.StatusMethodNotAllowed},
		{"unknown path", http.MethodPost, withKey("/v1/nope", key), formCT, "class=call", http.StatusNotFound},
		// The admin API takes no token from the URL.
		{"admin API with ?authkey=", http.MethodGet, withKey("/v1/subscriptions", tn.root), "", "", http.StatusUnauthorized},
		{"NetSapiens path with ?authkey=", http.MethodGet, withKey("/ns-api/v2/subscriptions", tn.root), "", "", http.StatusUnauthorized},
		{"websocket, not upgraded", http.MethodGet, withKey(httpapi.WSPathEnswitch, tn.root), "", "", http.StatusUpgradeRequired},
	}
	for _, r := range refusals {
		code, body := send(remote, r.method, r.path, r.ct, r.body, nil)
		if code != r.code {
			t.Fatalf("%s: %d %s, want %d", r.what, code, body, r.code)
		}
		for _, s := range secrets {
			if bytes.Contains(body, []byte(s)) {
				t.Fatalf("%s: the answer %s holds a token", r.what, body)
			}
		}
	}
	wantStatus := func(what string, code int, body []byte, want int) {
		t.Helper()
		if code != want {
			t.Fatalf("%s: %d %s, want %d", what, code, body, want)
		}
	}
	code, body = send(remote, http.MethodPost, withKey("/v1/events", key), "application/json",
		`{"model":"call","x":"`+strings.Repeat("a", 5<<20)+`"}`, nil)
	wantStatus("5 MiB body", code, body, http.StatusRequestEntityTooLarge)

	// The events as stored, read back over the Enswitch websocket path with
	// ?authkey= from the same address: class stood for model, the fields
	// are the form's, and the URL's authkey is no event field.
	rt := *tn
	rt.hc = remote
	rt.t = t
	c := rt.mustWS(withKey(httpapi.WSPathEnswitch, tn.root)+"&since="+url.QueryEscape(since), nil)
	var got []map[string]any
	for range 4 {
		got = append(got, wsRead(t, c))
	}
	first := got[0]
	if first["model"] != "call" || first["class"] != "call" || first["event"] != "start" || first["callid"] != "1234567890.100000" {
		t.Fatalf("the form event as stored: %v", first)
	}
	if got[1]["event"] != "answer" || got[1]["n"] != float64(2) {
		t.Fatalf("the JSON event posted as a form, as stored: %v", got[1])
	}
	for _, ev := range got {
		if _, ok := ev["authkey"]; ok {
			t.Fatalf("an event holds the URL's authkey: %v", ev)
		}
	}
}
