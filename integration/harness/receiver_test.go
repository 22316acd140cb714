package harness

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
)

// post sends one webhook POST of events (json-array) for sub.
func post(t *testing.T, r *Receiver, sub, secret string, ids ...string) int {
	t.Helper()
	evs := make([]map[string]any, len(ids))
	for i, id := range ids {
		evs[i] = map[string]any{"event-id": id, "model": "call"}
	}
	body, _ := json.Marshal(evs)
	req, _ := http.NewRequest(http.MethodPost, r.URL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Correlation-ID", sub)
	req.Header.Set("webhook-id", "msg_1")
	now := time.Now()
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	if secret != "" {
		sig, err := webhook.Sign(secret, "msg_1", time.Unix(now.Unix(), 0), body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("webhook-signature", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestReceiverAccounting(t *testing.T) {
	r := NewReceiver(t, ReceiverOptions{Answer: func(n int, _ *http.Request) (int, bool) {
		if n == 2 {
			return http.StatusServiceUnavailable, false
		}
		return 0, false
	}})
	accepted := map[string][]string{"n1": {"a-1", "a-2", "a-3", "a-4"}, "n2": {"b-1", "b-2"}}
	post(t, r, "s1", "", "a-1", "a-3")        // 0
	post(t, r, "s1", "", "b-1", "a-2")        // 1: a-2 after a-3: out of order
	post(t, r, "s1", "", "a-4")               // 2: refused, not delivered
	post(t, r, "s1", "", "a-3", "b-2", "x-9") // 3: a-3 again: duplicate; x-9 was never accepted
	post(t, r, "s2", "", "a-4")               // 4: another subscription
	a := r.Accounting(accepted, "s1")
	want := Account{Accepted: 6, Delivered: 5, Lost: 1, Duplicates: 1, OutOfOrder: 1, LostExamples: []string{"a-4"}}
	a.LongestGap = 0
	if a.String() != want.String() {
		t.Errorf("Accounting(s1) = %s\nwant          %s", a, want)
	}
	all := r.Accounting(accepted, "")
	if all.Lost != 0 || all.Delivered != 6 || all.Duplicates != 1 || all.OutOfOrder != 1 {
		t.Errorf("Accounting(all) = %s", all)
	}
	if got := r.Refused(); got != 1 {
		t.Errorf("Refused = %d, want 1", got)
	}
	if ps := r.Posts(); len(ps) != 5 || ps[2].Status != 503 || ps[3].CorrelationID != "s1" || len(ps[3].EventIDs) != 3 || ps[0].WebhookID != "msg_1" {
		t.Errorf("Posts = %+v", ps)
	}
}

func TestReceiverOverlapAndSignatures(t *testing.T) {
	secret := webhook.NewSecret()
	r := NewReceiver(t, ReceiverOptions{Secret: secret, Answer: func(n int, _ *http.Request) (int, bool) {
		if n < 2 {
			return 0, true
		}
		return 0, false
	}})
	// Two hanging POSTs of s1 in flight at once, then one of s2.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c := &http.Client{Timeout: 300 * time.Millisecond}
			req, _ := http.NewRequest(http.MethodPost, r.URL(), strings.NewReader("[]"))
			req.Header.Set("X-Correlation-ID", "s1")
			if resp, err := c.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	WaitFor(t, func() (bool, string, string) { return r.Hanging() == 2, "2 hanging", strconv.Itoa(r.Hanging()) }, 5*time.Second)
	wg.Wait()
	if got := post(t, r, "s2", secret, "e-1"); got != 200 {
		t.Fatalf("status %d", got)
	}
	post(t, r, "s2", "", "e-2") // unsigned
	if got := r.Overlap("s1"); got != 2 {
		t.Errorf("Overlap(s1) = %d, want 2", got)
	}
	if got := r.Overlap("s2"); got != 1 {
		t.Errorf("Overlap(s2) = %d, want 1", got)
	}
	// The hanging POSTs had no valid signature either.
	if got := r.SignatureFailures(); got != 3 {
		t.Errorf("SignatureFailures = %d, want 3 (two hanging unsigned, one unsigned)", got)
	}
}
