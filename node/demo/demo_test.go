package demo

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source/synthetic"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/node"
)

func TestReceiverVerifies(t *testing.T) {
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	r, err := StartReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	post := func(signWith, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, r.URL(), strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if signWith != "" {
			now := time.Now()
			sig, err := webhook.Sign(signWith, "msg_1", now, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("webhook-id", "msg_1")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
			req.Header.Set("webhook-signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Before the secret is known every POST is refused.
	if code := post(secret, `[{"model":"call"}]`); code != http.StatusUnauthorized {
		t.Fatalf("POST before SetSecret: %d, want 401", code)
	}
	if err := r.SetSecret(secret); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, signWith, body string
		want                 int
	}{
		{"batch", secret, `[{"model":"call"},{"model":"cdr"}]`, http.StatusNoContent},
		{"one object", secret, `{"model":"presence"}`, http.StatusNoContent},
		{"other secret", other, `[{"model":"call"}]`, http.StatusUnauthorized},
		{"unsigned", "", `[{"model":"call"}]`, http.StatusUnauthorized},
		{"signed garbage", secret, `not json`, http.StatusBadRequest},
	} {
		if code := post(tc.signWith, tc.body); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	want := ReceiverStats{Posts: 2, Events: 3, BadSig: 3, BadBody: 1}
	if got := r.Stats(); got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if err := r.SetSecret("not a secret"); err == nil {
		t.Error("SetSecret accepted a malformed secret")
	}
}

func TestLine(t *testing.T) {
	p := synthetic.Stats{Calls: 12, Live: 3, Events: 70}
	r := ReceiverStats{Posts: 20, Events: 68}
	sub := httpapi.SubView{Status: "active", PostsCount: 19, ErrorCount: 1, Lag: 2}
	for _, tc := range []struct {
		name   string
		p      synthetic.Stats
		r      ReceiverStats
		subErr error
		want   string
	}{
		{"healthy", p, r, nil, "12s delivered 68 in 20 POSTs, 0 bad signatures, lag 2 | sub active posts 19 errors 1 | calls 12 (3 live) ingested 70"},
		{"failures", synthetic.Stats{Calls: 1, Events: 3, EmitErrors: 2}, ReceiverStats{BadSig: 4, BadBody: 1}, nil,
			"12s delivered 0 in 0 POSTs, 4 bad signatures, 1 bad bodies, lag 2 | sub active posts 19 errors 1 | calls 1 (0 live) ingested 3 (2 failed)"},
		{"api down", p, r, errors.New("connection refused"), "12s delivered 68 in 20 POSTs, 0 bad signatures | sub: connection refused | calls 12 (3 live) ingested 70"},
	} {
		if got := Line(12500*time.Millisecond, tc.p, tc.r, sub, tc.subErr); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	tmp := t.TempDir()
	cfg := func(string, string) (node.Config, error) { return node.Default(), nil }
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"zero rate", Options{Rate: 0, Config: cfg, Out: &bytes.Buffer{}}},
		{"negative rate", Options{Rate: -1, Config: cfg, Out: &bytes.Buffer{}}},
		{"rate over the maximum", Options{Rate: MaxRate + 1, Config: cfg, Out: &bytes.Buffer{}}},
		{"negative duration", Options{Rate: 1, Duration: -time.Second, Config: cfg, Out: &bytes.Buffer{}}},
		{"no config", Options{Rate: 1, Out: &bytes.Buffer{}}},
		{"all interfaces", Options{Rate: 1, HTTPAddr: ":7480", Config: cfg, Out: &bytes.Buffer{}}},
		{"public address", Options{Rate: 1, HTTPAddr: "192.0.2.1:7480", Config: cfg, Out: &bytes.Buffer{}}},
		{"no port", Options{Rate: 1, HTTPAddr: "127.0.0.1", Config: cfg, Out: &bytes.Buffer{}}},
	} {
		tc.o.TempDir = tmp
		if err := Run(context.Background(), tc.o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", tc.name, err)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("refused runs left %d entries in the temp dir", len(left))
	}
}

// TestRunRemovesTempDirOnError: a node that cannot start still leaves no
// temp dir behind.
func TestRunRemovesTempDirOnError(t *testing.T) {
	tmp := t.TempDir()
	var out bytes.Buffer
	err := Run(context.Background(), Options{Rate: 1, Out: &out, TempDir: tmp,
		Config: func(string, string) (node.Config, error) { return node.Config{}, node.ErrConfig }})
	if !errors.Is(err, node.ErrConfig) {
		t.Fatalf("Run: %v, want the Config error", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("a failed run left %d entries in the temp dir", len(left))
	}
	if !strings.Contains(out.String(), "stopped; removed "+tmp) {
		t.Errorf("output does not say the temp dir was removed:\n%s", out.String())
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) || IsTerminal(&bytes.Buffer{}) {
		t.Error("a file or a buffer taken for a terminal")
	}
	if termWidth(f) != 0 {
		t.Error("a file has a terminal width")
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:0": true, "127.0.0.2:7480": true, "[::1]:7480": true, "localhost:7480": true,
		":7480": false, "0.0.0.0:7480": false, "[::]:7480": false, "example.com:80": false, "127.0.0.1": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestLiveLine: on a terminal the line is redrawn in place (carriage
// return, padded over a longer previous line, cut to the width) and the
// final one ends with a newline.
func TestLiveLine(t *testing.T) {
	var out bytes.Buffer
	st := &status{out: &out, live: true, start: time.Now(), cols: 60}
	api := client.New("127.0.0.1:1", "") // nothing listens: the sub part is an error
	rcv := &Receiver{}
	pbx := synthetic.New(synthetic.Options{})
	st.show(api, pbx, rcv, false)
	first := out.String()
	if !strings.HasPrefix(first, "\r") || strings.Contains(first, "\n") || len(first) != 1+59 {
		t.Fatalf("first live line %q: want \\r and 59 columns, no newline", first)
	}
	st.cols = 0
	st.width = 200 // a longer line before: blanked with spaces
	out.Reset()
	st.show(api, pbx, rcv, true)
	last := out.String()
	if !strings.HasPrefix(last, "\r") || !strings.HasSuffix(last, strings.Repeat(" ", 10)+"\n") {
		t.Fatalf("final live line %q: want \\r, padding and a newline", last)
	}
}
