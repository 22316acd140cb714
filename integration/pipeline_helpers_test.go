package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// Helpers of the event pipeline tests (pipeline_test.go): the receiver
// (harness.Receiver) seen through the tests' types, raw ingest, and
// subscription polling.

// pipelineAgentArgs make an agent report (and so commit cursors and
// counters) five times a second, so the tests see them converge quickly.
var pipelineAgentArgs = []string{"--report-interval", "200ms", "--lease", "600ms", "--down-after", "1s"}

// startPipelineAgent starts a dev agent (harness.StartDev, which waits
// until its root token is accepted) with fast reports and the given extra
// flags.
func startPipelineAgent(t *testing.T, extra ...string) *harness.Node {
	t.Helper()
	return startDevAgent(t, append(append([]string{}, pipelineAgentArgs...), extra...)...)
}

// answer is what a receiver replies to one POST.
type answer struct {
	status int               // 0 = 200
	header map[string]string // extra response headers
	hang   bool              // never answer (until the client gives up or the test ends)
}

// receivedPost is one POST a receiver got.
type receivedPost struct {
	n      int // 0-based, in arrival order
	at     time.Time
	header http.Header
	body   []byte
	status int // what the receiver answered (0 when it hung)
}

// gotEvent is one event of a POST the receiver accepted (2xx).
type gotEvent struct {
	ID     string
	seq    int64 // the test's "seq" field; -1 when absent
	raw    []byte
	fields map[string]any
	post   int // index of the POST it came in
	at     time.Time
}

// receiver is a harness.Receiver that answers as the test's answer
// function says, seen through the pipeline tests' types.
type receiver struct {
	*harness.Receiver
}

// newReceiver starts a receiver (200 for every POST when answerFn is
// nil); it is closed when the test ends.
func newReceiver(t testing.TB, answerFn func(n int) answer) *receiver {
	t.Helper()
	var o harness.ReceiverOptions
	if answerFn != nil {
		o.Reply = func(n int, _ *http.Request) harness.Reply {
			a := answerFn(n)
			return harness.Reply{Status: a.status, Header: a.header, Hang: a.hang}
		}
	}
	return &receiver{harness.NewReceiver(t, o)}
}

// Snapshot returns copies of what the receiver has got so far.
func (r *receiver) Snapshot() (posts []receivedPost, events []gotEvent) {
	for _, p := range r.Posts() {
		posts = append(posts, receivedPost{n: p.N, at: p.At, header: p.Header, body: p.Body, status: p.Status})
	}
	for _, e := range r.Events() {
		events = append(events, gotEvent{ID: e.ID, seq: seqOf(e.Fields), raw: e.Raw, fields: e.Fields, post: e.Post, at: e.At})
	}
	return posts, events
}

// seqOf returns the event's "seq" field (a JSON number, or a string when
// it came through a form), -1 when absent.
func seqOf(f map[string]any) int64 {
	switch v := f["seq"].(type) {
	case json.Number:
		if n, err := v.Int64(); err == nil {
			return n
		}
	case string:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return -1
}

// createSub creates a subscription and fails the test on error.
func createSub(t testing.TB, c *client.Client, f client.Fields) httpapi.SubView {
	t.Helper()
	v, err := c.CreateSub(context.Background(), f)
	if err != nil {
		t.Fatalf("create subscription %v: %v", f, err)
	}
	if v.Secret == "" {
		t.Fatalf("create subscription: no secret in the answer: %+v", v)
	}
	return v
}

// waitSub polls a subscription until ok accepts it and returns it.
func waitSub(t testing.TB, c *client.Client, id, want string, ok func(v httpapi.SubView) bool, timeout time.Duration) httpapi.SubView {
	t.Helper()
	var last httpapi.SubView
	waitFor(t, func() (bool, string, string) {
		v, err := c.GetSub(context.Background(), id)
		if err != nil {
			return false, "subscription " + id + ": " + want, err.Error()
		}
		last = v
		return ok(v), "subscription " + id + ": " + want, subSummary(v)
	}, timeout)
	return last
}

// subSummary is the status and counters of a subscription, for messages.
func subSummary(v httpapi.SubView) string {
	return fmt.Sprintf("status=%s posts=%d errors=%d events=%d dropped=%d lag=%d last-error=%q",
		v.Status, v.PostsCount, v.ErrorCount, v.EventsCount, v.DroppedCount, v.Lag, v.LastError)
}

// ingestResult is the answer to a raw ingest request.
type ingestResult struct {
	status int
	body   string
	client.IngestResult
}

// ingestHTTP is the client of raw ingest requests.
var ingestHTTP = &http.Client{Timeout: 30 * time.Second}

// ingestRaw posts body to the agent's /v1/events with the given
// Content-Type (none when empty). A transport error is returned, not
// fatal (the agent may be being killed).
func ingestRaw(a *harness.Node, contentType string, body []byte) (ingestResult, error) {
	req, err := http.NewRequest(http.MethodPost, a.BaseURL()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return ingestResult{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ingestHTTP.Do(req)
	if err != nil {
		return ingestResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ingestResult{}, err
	}
	res := ingestResult{status: resp.StatusCode, body: string(b)}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(b, &res.IngestResult); err != nil {
			return res, fmt.Errorf("202 answer does not decode: %v: %s", err, b)
		}
	}
	return res, nil
}

// ingestRawReader posts a body of unknown length (chunked).
func ingestRawReader(a *harness.Node, contentType string, body io.Reader) (ingestResult, error) {
	req, err := http.NewRequest(http.MethodPost, a.BaseURL()+"/v1/events", body)
	if err != nil {
		return ingestResult{}, err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := ingestHTTP.Do(req)
	if err != nil {
		return ingestResult{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return ingestResult{status: resp.StatusCode, body: string(b)}, nil
}

// mustIngest posts events (a JSON object or array) and fails the test
// unless they are accepted; it returns the event ids.
func mustIngest(t testing.TB, a *harness.Node, events any) []string {
	t.Helper()
	body, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	res, err := ingestRaw(a, "application/json", body)
	if err != nil {
		t.Fatalf("ingest: %v", err)
	}
	if res.status != http.StatusAccepted {
		t.Fatalf("ingest: status %d: %s", res.status, res.body)
	}
	if res.Accepted != len(res.EventIDs) {
		t.Fatalf("ingest: accepted %d but %d event-ids: %s", res.Accepted, len(res.EventIDs), res.body)
	}
	return res.EventIDs
}

// callEvent is a call event of the pipeline tests, numbered by seq.
func callEvent(domain string, seq int) map[string]any {
	return map[string]any{
		"model": "call", "domain": domain, "user": "u" + strconv.Itoa(seq%7),
		"seq": seq, "orig_callid": "c" + strconv.Itoa(seq), "term_to_uri": "sip:100@" + domain,
	}
}

// callEvents returns events seq from..from+n-1.
func callEvents(domain string, from, n int) []map[string]any {
	out := make([]map[string]any, n)
	for i := range out {
		out[i] = callEvent(domain, from+i)
	}
	return out
}

// statusWatch records the successive statuses of a subscription, polled
// in the background until the test ends.
type statusWatch struct {
	mu   sync.Mutex
	seen []string // consecutive distinct statuses
	at   []time.Time
}

func watchStatus(t testing.TB, c *client.Client, id string) *statusWatch {
	w := &statusWatch{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.GetSub(ctx, id)
			cancel()
			if err == nil {
				w.mu.Lock()
				if len(w.seen) == 0 || w.seen[len(w.seen)-1] != v.Status {
					w.seen = append(w.seen, v.Status)
					w.at = append(w.at, time.Now())
				}
				w.mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return w
}

// history returns the statuses seen so far, in order.
func (w *statusWatch) history() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.seen...)
}

// indexOf returns the position of s in list at or after from, -1 if absent.
func indexOf(list []string, s string, from int) int {
	for i := from; i < len(list); i++ {
		if list[i] == s {
			return i
		}
	}
	return -1
}
