package harness

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
)

// ReceiverOptions say how a Receiver listens and answers.
type ReceiverOptions struct {
	// Host is the IP to listen on; default 127.0.0.1.
	Host string
	// Listen, when set, makes the listener (e.g. NetNS.Listen).
	Listen func(network, addr string) (net.Listener, error)
	// Answer says what to answer POST n (0-based, in arrival order):
	// status (0 = 200), or hang: never answer, until the client gives up
	// or the test ends. Default 200.
	Answer func(n int, r *http.Request) (status int, hang bool)
	// Reply, when set, is used instead of Answer and can add response
	// headers (Retry-After, Location).
	Reply func(n int, r *http.Request) Reply
	// Secret, when set, makes the receiver verify every POST's Standard
	// Webhooks signature with it and count the failures (SetSecret
	// changes it).
	Secret string
}

// Reply is what a receiver answers one POST.
type Reply struct {
	Status int               // 0 = 200
	Header map[string]string // extra response headers
	Hang   bool              // never answer (until the client gives up or the test ends)
}

// Post is one POST a receiver got.
type Post struct {
	N             int       // 0-based, in arrival order
	At            time.Time // when the request arrived
	End           time.Time // when the answer was written (or the hang ended)
	CorrelationID string    // X-Correlation-ID: the subscription
	WebhookID     string    // webhook-id: the batch
	Status        int       // what the receiver answered (0 when it hung)
	EventIDs      []string  // the event-ids of the body, in order
	RemoteAddr    string
	Header        http.Header
	Body          []byte
	SignatureOK   bool // the signature verified (only with a secret)
}

// Event is one event of a POST the receiver answered 2xx.
type Event struct {
	ID     string
	Sub    string // the POST's X-Correlation-ID
	Raw    []byte
	Fields map[string]any // decoded with json.Number (form values are strings)
	Post   int            // index of the POST it came in
	At     time.Time
}

// Receiver is a webhook endpoint that records every POST and, for the
// POSTs it answers 2xx, every event (JSON array, JSON object or form
// bodies). It reports malformed bodies and an event delivered again with
// another body as test errors at the end of the test.
type Receiver struct {
	t       TB
	srv     *http.Server
	ln      net.Listener
	url     string
	opts    ReceiverOptions
	release chan struct{} // closed at cleanup: hanging handlers return

	mu       sync.Mutex
	closing  bool
	secret   string
	posts    []Post
	events   []Event
	times    map[string]map[string]int // sub → event-id → accepted deliveries
	first    map[string][]byte         // event-id → first body
	inFlight int                       // hanging now
	sigFails int
	problems []string
}

// NewReceiver starts a receiver; it is closed when the test ends.
func NewReceiver(t TB, opts ReceiverOptions) *Receiver {
	t.Helper()
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	listen := opts.Listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("receiver: listen on %s: %v", host, err)
	}
	r := &Receiver{
		t: t, ln: ln, opts: opts, release: make(chan struct{}), secret: opts.Secret,
		times: map[string]map[string]int{}, first: map[string][]byte{},
		url: "http://" + ln.Addr().String(),
	}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() {
		r.mu.Lock()
		r.closing = true
		r.mu.Unlock()
		close(r.release)
		_ = r.srv.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.problems {
			errorf(t, "receiver %s: %s", r.url, p)
		}
	})
	return r
}

// URL is the receiver's webhook URL (…/hook).
func (r *Receiver) URL() string { return r.url + "/hook" }

// Base is the receiver's base URL (http://host:port); every path is
// served alike.
func (r *Receiver) Base() string { return r.url }

// SetSecret sets the signing secret the receiver verifies from now on.
func (r *Receiver) SetSecret(secret string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = secret
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	n := len(r.posts)
	var a Reply
	switch {
	case r.opts.Reply != nil:
		a = r.opts.Reply(n, req)
	case r.opts.Answer != nil:
		a.Status, a.Hang = r.opts.Answer(n, req)
	}
	if err != nil && !r.closing {
		r.problems = append(r.problems, fmt.Sprintf("POST %d: reading the body: %v", n, err))
	}
	p := Post{
		N: n, At: at, CorrelationID: req.Header.Get("X-Correlation-ID"), WebhookID: req.Header.Get("webhook-id"),
		RemoteAddr: req.RemoteAddr, Header: req.Header.Clone(), Body: body,
	}
	if r.secret != "" {
		p.SignatureOK = verify(r.secret, req.Header, body)
		if !p.SignatureOK {
			r.sigFails++
		}
	}
	evs, perr := decodeEvents(req.Header.Get("Content-Type"), body)
	for _, e := range evs {
		p.EventIDs = append(p.EventIDs, e.ID)
	}
	r.posts = append(r.posts, p)
	if a.Hang {
		r.inFlight++
		r.mu.Unlock()
		select {
		case <-req.Context().Done():
		case <-r.release:
		}
		r.mu.Lock()
		r.inFlight--
		r.posts[n].End = time.Now()
		r.mu.Unlock()
		return
	}
	status := a.Status
	if status == 0 {
		status = http.StatusOK
	}
	r.posts[n].Status = status
	if status >= 200 && status < 300 && err == nil {
		if perr != nil {
			r.problems = append(r.problems, fmt.Sprintf("POST %d: %v: %.200s", n, perr, body))
		}
		r.record(n, at, p.CorrelationID, evs)
	}
	r.mu.Unlock()
	for k, v := range a.Header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(status)
	r.mu.Lock()
	r.posts[n].End = time.Now()
	r.mu.Unlock()
}

// verify checks the Standard Webhooks signature of a POST.
func verify(secret string, h http.Header, body []byte) bool {
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil {
		return false
	}
	want, err := webhook.Sign(secret, h.Get("webhook-id"), time.Unix(ts, 0), body)
	if err != nil {
		return false
	}
	for _, got := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(got), []byte(want)) {
			return true
		}
	}
	return false
}

// decodeEvents decodes a webhook body: a form (one event), a JSON array of
// objects or one JSON object.
func decodeEvents(contentType string, body []byte) ([]Event, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	if mt == "application/x-www-form-urlencoded" {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("form body: %v", err)
		}
		f := map[string]any{}
		for k, v := range vals {
			f[k] = v[0]
		}
		id, _ := f["event-id"].(string)
		return []Event{{ID: id, Raw: body, Fields: f}}, nil
	}
	var raws []json.RawMessage
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		raws = []json.RawMessage{trimmed}
	default:
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("body is not a JSON array or object: %v", err)
		}
	}
	out := make([]Event, 0, len(raws))
	var firstErr error
	for i, raw := range raws {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var f map[string]any
		if err := dec.Decode(&f); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("event %d: not a JSON object: %v", i, err)
			}
			continue
		}
		id, _ := f["event-id"].(string)
		if id == "" && firstErr == nil {
			firstErr = fmt.Errorf("event %d: no event-id: %s", i, raw)
		}
		out = append(out, Event{ID: id, Raw: append([]byte(nil), raw...), Fields: f})
	}
	return out, firstErr
}

// record notes the events of an accepted POST. Called with r.mu held.
func (r *Receiver) record(n int, at time.Time, sub string, evs []Event) {
	byID := r.times[sub]
	if byID == nil {
		byID = map[string]int{}
		r.times[sub] = byID
	}
	for _, e := range evs {
		if e.ID == "" {
			continue
		}
		if prev, ok := r.first[e.ID]; ok && !bytes.Equal(prev, e.Raw) {
			r.problems = append(r.problems, fmt.Sprintf("event %s delivered again with a different body:\nfirst %s\nnow   %s", e.ID, prev, e.Raw))
		} else if !ok {
			r.first[e.ID] = e.Raw
		}
		byID[e.ID]++
		e.Sub, e.Post, e.At = sub, n, at
		r.events = append(r.events, e)
	}
}

// Posts returns a copy of every POST so far, in arrival order.
func (r *Receiver) Posts() []Post {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Post(nil), r.posts...)
}

// Events returns a copy of every event of the POSTs answered 2xx, in
// arrival order.
func (r *Receiver) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// PostCount is the number of POSTs received (any answer).
func (r *Receiver) PostCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.posts)
}

// Refused is the number of POSTs answered other than 2xx (hung ones
// excluded).
func (r *Receiver) Refused() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.posts {
		if p.Status != 0 && (p.Status < 200 || p.Status > 299) {
			n++
		}
	}
	return n
}

// Distinct is the number of distinct event-ids accepted (all
// subscriptions).
func (r *Receiver) Distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, byID := range r.times {
		for id := range byID {
			seen[id] = true
		}
	}
	return len(seen)
}

// Times is how often the event was accepted, over all subscriptions.
func (r *Receiver) Times(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, byID := range r.times {
		n += byID[id]
	}
	return n
}

// Missing counts the ids never accepted (by any subscription) and names
// the first.
func (r *Receiver) Missing(ids []string) (missing int, example string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		got := false
		for _, byID := range r.times {
			got = got || byID[id] > 0
		}
		if !got {
			if missing == 0 {
				example = id
			}
			missing++
		}
	}
	return missing, example
}

// Duplicates is the number of deliveries beyond the first, per
// subscription, over all ids, and the ids delivered more than once.
func (r *Receiver) Duplicates() (extra int, ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, byID := range r.times {
		for id, n := range byID {
			if n > 1 {
				extra += n - 1
				ids = append(ids, id)
			}
		}
	}
	return extra, ids
}

// Hanging is the number of requests the receiver holds unanswered now.
func (r *Receiver) Hanging() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inFlight
}

// SignatureFailures is the number of POSTs whose signature did not verify
// (with a secret set).
func (r *Receiver) SignatureFailures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sigFails
}

// WaitDistinct waits until the receiver has accepted at least n distinct
// event-ids.
func (r *Receiver) WaitDistinct(t TB, n int, timeout time.Duration) {
	t.Helper()
	WaitFor(t, func() (bool, string, string) {
		got := r.Distinct()
		return got >= n, fmt.Sprintf("%d distinct events at %s", n, r.URL()), strconv.Itoa(got)
	}, timeout)
}

// WaitIDs waits until every id has been accepted at least once.
func (r *Receiver) WaitIDs(t TB, ids []string, timeout time.Duration) {
	t.Helper()
	WaitFor(t, func() (bool, string, string) {
		m, ex := r.Missing(ids)
		return m == 0, fmt.Sprintf("all %d events at %s", len(ids), r.URL()), fmt.Sprintf("%d missing (e.g. %s)", m, ex)
	}, timeout)
}

// Account is the exact accounting of the accepted events at a receiver.
type Account struct {
	Accepted   int // event-ids accepted at ingest
	Delivered  int // of those, delivered at least once
	Lost       int // of those, never delivered
	Duplicates int // deliveries beyond the first (per subscription)
	// OutOfOrder counts first deliveries that came after a later event of
	// the same source node (per subscription).
	OutOfOrder   int
	LostExamples []string // up to 5 lost ids
	// LongestGap is the longest time between two consecutive accepted
	// POSTs carrying these events.
	LongestGap time.Duration
}

func (a Account) String() string {
	s := fmt.Sprintf("accepted %d, delivered %d, lost %d, duplicates %d, out of order %d, longest gap %s",
		a.Accepted, a.Delivered, a.Lost, a.Duplicates, a.OutOfOrder, a.LongestGap.Round(time.Millisecond))
	if len(a.LostExamples) > 0 {
		s += fmt.Sprintf(" (lost e.g. %s)", strings.Join(a.LostExamples, ", "))
	}
	return s
}

// Accounting accounts for accepted events (by source node: event-ids in
// ingest order) at the receiver, for one subscription (its
// X-Correlation-ID), or sub "" for all: then an event is delivered when
// any subscription got it, and duplicates and order are counted per
// subscription and added up.
func (r *Receiver) Accounting(accepted map[string][]string, sub string) Account {
	r.mu.Lock()
	defer r.mu.Unlock()
	type pos struct {
		src string
		i   int
	}
	where := map[string]pos{}
	var a Account
	for src, ids := range accepted {
		for i, id := range ids {
			where[id] = pos{src, i}
		}
		a.Accepted += len(ids)
	}
	delivered := map[string]bool{}
	type key struct{ sub, id string }
	seen := map[key]bool{}
	last := map[key]int{} // (sub, source) → highest index first-delivered so far
	var times []time.Time
	prevPost := -1
	for _, e := range r.events {
		if sub != "" && e.Sub != sub {
			continue
		}
		p, ok := where[e.ID]
		if !ok {
			continue
		}
		if e.Post != prevPost {
			times = append(times, e.At)
			prevPost = e.Post
		}
		delivered[e.ID] = true
		k := key{e.Sub, e.ID}
		if seen[k] {
			a.Duplicates++
			continue
		}
		seen[k] = true
		sk := key{e.Sub, p.src}
		if hi, ok := last[sk]; ok && p.i < hi {
			a.OutOfOrder++
		} else {
			last[sk] = p.i
		}
	}
	a.Delivered = len(delivered)
	a.Lost = a.Accepted - a.Delivered
	srcs := make([]string, 0, len(accepted))
	for src := range accepted {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	for _, src := range srcs {
		for _, id := range accepted[src] {
			if !delivered[id] && len(a.LostExamples) < 5 {
				a.LostExamples = append(a.LostExamples, id)
			}
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	for i := 1; i < len(times); i++ {
		a.LongestGap = max(a.LongestGap, times[i].Sub(times[i-1]))
	}
	return a
}

// WaitDelivered waits until every accepted event has been delivered (for
// sub, "" = any), failing t with the Account if not within timeout.
func (r *Receiver) WaitDelivered(t TB, accepted map[string][]string, sub string, timeout time.Duration) Account {
	t.Helper()
	var acc Account
	WaitFor(t, func() (bool, string, string) {
		acc = r.Accounting(accepted, sub)
		what := "all accepted events delivered"
		if sub != "" {
			what += " to " + sub
		}
		return acc.Lost == 0, what, acc.String()
	}, timeout)
	return acc
}

// Overlap is the largest number of POSTs for the subscription (its
// X-Correlation-ID; "" = all) that were in flight at the receiver at the
// same time, from each request's arrival to its answer. A POST still
// unanswered counts as in flight until now.
func (r *Receiver) Overlap(sub string) int {
	r.mu.Lock()
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	now := time.Now()
	for _, p := range r.posts {
		if sub != "" && p.CorrelationID != sub {
			continue
		}
		end := p.End
		if end.IsZero() {
			end = now
		}
		edges = append(edges, edge{p.At, +1}, edge{end, -1})
	}
	r.mu.Unlock()
	// Ends sort before starts at the same instant: back-to-back POSTs do
	// not overlap.
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta
		}
		return edges[i].at.Before(edges[j].at)
	})
	cur, most := 0, 0
	for _, e := range edges {
		cur += e.delta
		most = max(most, cur)
	}
	return most
}
