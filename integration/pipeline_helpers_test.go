package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// Helpers of the event pipeline tests (pipeline_test.go): webhook receivers
// running in the test process, raw ingest, and subscription polling.

// pipelineAgentArgs make an agent report (and so commit cursors and
// counters) five times a second, so the tests see them converge quickly.
var pipelineAgentArgs = []string{"--report-interval", "200ms", "--lease", "600ms", "--down-after", "1s"}

// startPipelineAgent starts a dev agent with fast reports and the given
// extra flags, and waits until its root token is accepted: /readyz turns
// 200 once the node's registration is committed, which the first leader
// commits a moment before the root token, so an API call right after
// startDevAgent can get a 401.
func startPipelineAgent(t *testing.T, extra ...string) *agent {
	t.Helper()
	a := startDevAgent(t, append(append([]string{}, pipelineAgentArgs...), extra...)...)
	c := a.client()
	waitFor(t, func() (bool, string, string) {
		_, err := c.ListSubs(context.Background(), nil)
		return err == nil, "the root token to be accepted", fmt.Sprint(err)
	}, readyTimeout)
	return a
}

// nodeID reads the agent's node id from its data dir.
func (a *agent) nodeID() string {
	a.t.Helper()
	b, err := os.ReadFile(filepath.Join(a.dataDir, "node-id"))
	if err != nil {
		a.t.Fatalf("node-id: %v", err)
	}
	return strings.TrimSpace(string(b))
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
	id     string
	seq    int64 // the test's "seq" field; -1 when absent
	raw    []byte
	fields map[string]any
	post   int // index of the POST it came in
	at     time.Time
}

// receiver is a webhook endpoint on 127.0.0.1 that records every POST and
// answers as answerFn says (200 when nil). Bodies are expected to be JSON
// arrays of event objects (json-array encoding).
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	answer  func(n int) answer
	release chan struct{} // closed at cleanup: hanging handlers return

	mu       sync.Mutex
	posts    []receivedPost
	events   []gotEvent     // of accepted POSTs, in arrival order
	times    map[string]int // accepted deliveries per event-id
	first    map[string][]byte
	inFlight int
	problems []string // malformed bodies, duplicates that differ, …
}

// newReceiver starts a receiver; it is closed when the test ends.
func newReceiver(t testing.TB, answerFn func(n int) answer) *receiver {
	t.Helper()
	r := &receiver{
		t: t, answer: answerFn, release: make(chan struct{}),
		times: map[string]int{}, first: map[string][]byte{},
	}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		close(r.release)
		r.srv.CloseClientConnections()
		r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			t.Errorf("receiver %s: %s", r.srv.URL, p)
		}
	})
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	at := time.Now()
	r.mu.Lock()
	n := len(r.posts)
	a := answer{}
	if r.answer != nil {
		a = r.answer(n)
	}
	if err != nil {
		r.problems = append(r.problems, fmt.Sprintf("POST %d: reading the body: %v", n, err))
	}
	r.posts = append(r.posts, receivedPost{n: n, at: at, header: req.Header.Clone(), body: body})
	if a.hang {
		r.inFlight++
		r.mu.Unlock()
		select {
		case <-req.Context().Done():
		case <-r.release:
		}
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
		return
	}
	status := a.status
	if status == 0 {
		status = http.StatusOK
	}
	r.posts[n].status = status
	if status >= 200 && status < 300 {
		r.record(n, at, body)
	}
	r.mu.Unlock()
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
}

// record notes the events of an accepted POST. Called with r.mu held.
func (r *receiver) record(n int, at time.Time, body []byte) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("POST %d: body is not a JSON array: %v: %.200s", n, err, body))
		return
	}
	for i, raw := range raws {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var f map[string]any
		if err := dec.Decode(&f); err != nil {
			r.problems = append(r.problems, fmt.Sprintf("POST %d event %d: not a JSON object: %v", n, i, err))
			continue
		}
		id, _ := f["event-id"].(string)
		if id == "" {
			r.problems = append(r.problems, fmt.Sprintf("POST %d event %d: no event-id: %s", n, i, raw))
		}
		if prev, ok := r.first[id]; ok && !bytes.Equal(prev, raw) {
			r.problems = append(r.problems, fmt.Sprintf("event %s delivered again with a different body:\nfirst %s\nnow   %s", id, prev, raw))
		} else if !ok {
			r.first[id] = append([]byte(nil), raw...)
		}
		r.times[id]++
		r.events = append(r.events, gotEvent{id: id, seq: seqOf(f), raw: append([]byte(nil), raw...), fields: f, post: n, at: at})
	}
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

// snapshot returns copies of what the receiver has got so far.
func (r *receiver) snapshot() (posts []receivedPost, events []gotEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedPost(nil), r.posts...), append([]gotEvent(nil), r.events...)
}

// postCount is the number of POSTs received (any answer).
func (r *receiver) postCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.posts)
}

// distinct is the number of distinct event-ids accepted.
func (r *receiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.times)
}

// has reports whether every id has been accepted at least once, and how
// many are missing.
func (r *receiver) missing(ids []string) (missing int, example string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if r.times[id] == 0 {
			if missing == 0 {
				example = id
			}
			missing++
		}
	}
	return missing, example
}

// duplicates is the number of deliveries beyond the first, over all ids.
func (r *receiver) duplicates() (extra int, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.times {
		if n > 1 {
			extra += n - 1
			ids = append(ids, id)
		}
	}
	return extra, ids
}

// hanging is the number of requests the receiver holds unanswered now.
func (r *receiver) hanging() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight
}

// waitDistinct waits until the receiver has accepted at least n distinct
// event-ids.
func (r *receiver) waitDistinct(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	waitFor(t, func() (bool, string, string) {
		got := r.distinct()
		return got >= n, fmt.Sprintf("%d distinct events at %s", n, r.url()), fmt.Sprintf("%d", got)
	}, timeout)
}

// waitIDs waits until every id has been accepted at least once.
func (r *receiver) waitIDs(t testing.TB, ids []string, timeout time.Duration) {
	t.Helper()
	waitFor(t, func() (bool, string, string) {
		m, ex := r.missing(ids)
		return m == 0, fmt.Sprintf("all %d events at %s", len(ids), r.url()),
			fmt.Sprintf("%d missing (e.g. %s)", m, ex)
	}, timeout)
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
func ingestRaw(a *agent, contentType string, body []byte) (ingestResult, error) {
	req, err := http.NewRequest(http.MethodPost, a.baseURL()+"/v1/events", bytes.NewReader(body))
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
func ingestRawReader(a *agent, contentType string, body io.Reader) (ingestResult, error) {
	req, err := http.NewRequest(http.MethodPost, a.baseURL()+"/v1/events", body)
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
func mustIngest(t testing.TB, a *agent, events any) []string {
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

// firstSeen returns when status was first seen (zero if never).
func (w *statusWatch) firstSeen(status string) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, s := range w.seen {
		if s == status {
			return w.at[i]
		}
	}
	return time.Time{}
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
