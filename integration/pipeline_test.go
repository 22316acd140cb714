package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// End-to-end tests of the event pipeline: real `hookswitch agent --dev`
// processes, ingest over HTTP, and webhook receivers in this process.

// checkSignatures verifies every POST's Standard Webhooks signature with
// the official library and the subscription's secret, and that a wrong
// secret does not verify (so the check itself can fail).
func checkSignatures(t *testing.T, posts []receivedPost, secret, wrongSecret string) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("standardwebhooks.NewWebhook: %v", err)
	}
	wrong, err := standardwebhooks.NewWebhook(wrongSecret)
	if err != nil {
		t.Fatalf("standardwebhooks.NewWebhook: %v", err)
	}
	for _, p := range posts {
		if err := wh.Verify(p.body, p.header); err != nil {
			t.Errorf("POST %d: signature does not verify: %v (headers %v)", p.n, err, p.header)
		}
		if err := wrong.Verify(p.body, p.header); err == nil {
			t.Errorf("POST %d: signature verifies with another subscription's secret", p.n)
		}
	}
}

// TestDeliveryOrderHeadersSignature ingests 500 events in mixed requests
// (single objects, arrays, an Enswitch form POST) and checks that the
// receiver gets each exactly once, in ingest order, in signed json-array
// batches of at most batch-max, that a subscription of another domain gets
// none of them, and that the subscription's counters converge.
func TestDeliveryOrderHeadersSignature(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	node := a.ID
	recv := newReceiver(t, nil)
	other := newReceiver(t, nil)
	sub := createSub(t, c, client.Fields{"model": "call", "domain": "one.example", "post-url": recv.URL(),
		"encoding": "json-array", "batch-max": 10})
	otherSub := createSub(t, c, client.Fields{"model": "call", "domain": "two.example", "post-url": other.URL()})

	const total = 500
	began := time.Now()
	var ids []string // in ingest order: ids[seq]
	sizes := []int{1, 7, 1, 40, 3, 25, 1, 12}
	formAt := 4 // the 5th request is a form POST of one event
	for req, seq := 0, 0; seq < total; req++ {
		switch {
		case req == formAt:
			form := url.Values{"class": {"call"}, "domain": {"one.example"}, "seq": {strconv.Itoa(seq)},
				"caller_id": {"100"}, "callee": {"200"}}
			res, err := ingestRaw(a, "application/x-www-form-urlencoded", []byte(form.Encode()))
			if err != nil || res.status != http.StatusAccepted || len(res.EventIDs) != 1 {
				t.Fatalf("form ingest: %v: %d %s", err, res.status, res.body)
			}
			ids = append(ids, res.EventIDs...)
			seq++
		case sizes[req%len(sizes)] == 1:
			ids = append(ids, mustIngest(t, a, callEvent("one.example", seq))...) // one object, no array
			seq++
		default:
			n := min(sizes[req%len(sizes)], total-seq)
			got := mustIngest(t, a, callEvents("one.example", seq, n))
			if len(got) != n {
				t.Fatalf("ingest of %d events: %d event-ids", n, len(got))
			}
			ids = append(ids, got...)
			seq += n
		}
	}
	if len(ids) != total {
		t.Fatalf("ingested %d events, want %d", len(ids), total)
	}

	recv.WaitDistinct(t, total, 15*time.Second)
	// A marker for the other domain: once it has arrived there, everything
	// ingested before it has been matched against that subscription too.
	marker := mustIngest(t, a, callEvent("two.example", 9999))
	other.WaitDistinct(t, 1, 10*time.Second)
	t.Logf("500 events delivered %s after the first ingest", time.Since(began).Round(time.Millisecond))

	posts, events := recv.Snapshot()
	if len(events) != total {
		extra, dupIDs := recv.Duplicates()
		t.Fatalf("receiver accepted %d events, want exactly %d (duplicates: %d, e.g. %v)", len(events), total, extra, dupIDs[:min(3, len(dupIDs))])
	}
	nowMs := time.Now().UnixMilli()
	for i, ev := range events {
		if ev.ID != ids[i] || ev.seq != int64(i) {
			t.Fatalf("event %d received: id %s seq %d; want id %s seq %d (ingest order)", i, ev.ID, ev.seq, ids[i], i)
		}
		f := ev.fields
		if f["node"] != node || f["model"] != "call" || f["domain"] != "one.example" {
			t.Errorf("event %s: node %v model %v domain %v; want %s call one.example", ev.ID, f["node"], f["model"], f["domain"], node)
		}
		n, ok := f["ingest-time"].(json.Number)
		ms, err := n.Int64()
		if !ok || err != nil || ms < began.UnixMilli()-1000 || ms > nowMs {
			t.Errorf("event %s: ingest-time %v is not unix ms within the test", ev.ID, f["ingest-time"])
		}
	}
	// The Enswitch form event: class stood for model, fields are strings.
	if f := events[ingestIndexOfForm(sizes, formAt)].fields; f["class"] != "call" || f["caller_id"] != "100" {
		t.Errorf("form event: got %v", f)
	}

	webhookIDs := map[string]bool{}
	for _, p := range posts {
		h := p.header
		if p.status != http.StatusOK {
			t.Errorf("POST %d answered %d", p.n, p.status)
		}
		if got := h.Get("Content-Type"); got != "application/json" {
			t.Errorf("POST %d: Content-Type %q", p.n, got)
		}
		if ua := h.Get("User-Agent"); !strings.HasPrefix(ua, "hookswitch/") || len(ua) == len("hookswitch/") {
			t.Errorf("POST %d: User-Agent %q, want hookswitch/<version>", p.n, ua)
		}
		if got := h.Get("X-Correlation-ID"); got != sub.ID {
			t.Errorf("POST %d: X-Correlation-ID %q, want %s", p.n, got, sub.ID)
		}
		id := h.Get("webhook-id")
		if id == "" || webhookIDs[id] {
			t.Errorf("POST %d: webhook-id %q is empty or not unique (no batch was retried)", p.n, id)
		}
		webhookIDs[id] = true
		ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
		if err != nil || ts < p.at.Unix()-5 || ts > p.at.Unix()+5 {
			t.Errorf("POST %d: webhook-timestamp %q is not the unix time of the attempt (%d)", p.n, h.Get("webhook-timestamp"), p.at.Unix())
		}
		var batch []json.RawMessage
		if err := json.Unmarshal(p.body, &batch); err != nil || len(batch) < 1 || len(batch) > 10 {
			t.Errorf("POST %d: %d events in the batch (err %v), want 1..10 (batch-max)", p.n, len(batch), err)
		}
	}
	checkSignatures(t, posts, sub.Secret, otherSub.Secret)

	// The other domain's subscription got the marker and nothing else.
	_, otherEvents := other.Snapshot()
	if len(otherEvents) != 1 || otherEvents[0].ID != marker[0] {
		t.Errorf("two.example subscription: got %d events (%v), want only the marker %s", len(otherEvents), otherEvents, marker[0])
	}
	if _, evs := recv.Snapshot(); len(evs) != total {
		t.Errorf("one.example subscription got %d events after the marker, want %d", len(evs), total)
	}

	// Counters converge to what the receiver saw.
	v := waitSub(t, c, sub.ID, fmt.Sprintf("posts-count %d, events-count %d, error-count 0, active, lag 0", len(posts), total),
		func(v httpapi.SubView) bool {
			return v.PostsCount == uint64(len(posts)) && v.EventsCount == total && v.ErrorCount == 0 &&
				v.Status == "active" && v.Lag == 0 && v.DroppedCount == 0
		}, 10*time.Second)
	if v.LastPost == "" || v.LastError != "" {
		t.Errorf("counters: last-post-datetime %q (want set), last-error %q (want none)", v.LastPost, v.LastError)
	}
	t.Logf("%d POSTs for %d events (batch-max 10)", len(posts), total)
	waitSub(t, c, otherSub.ID, "posts-count 1, events-count 1", func(v httpapi.SubView) bool {
		return v.PostsCount == 1 && v.EventsCount == 1 && v.Status == "active"
	}, 10*time.Second)
}

// ingestIndexOfForm returns the seq of the form event: the events of the
// requests before it.
func ingestIndexOfForm(sizes []int, formAt int) int {
	seq := 0
	for req := 0; req < formAt; req++ {
		seq += sizes[req%len(sizes)]
	}
	return seq
}

// TestReceiverFailsThenRecovers has the receiver fail (500, 500, then 503
// with Retry-After: 1) while 200 events are ingested, then recover, and
// checks that the failing batch was retried identically, everything
// arrived in order, and status and counters tell the story.
func TestReceiverFailsThenRecovers(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	failures := []answer{
		{status: http.StatusInternalServerError},
		{status: http.StatusInternalServerError},
		{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "1"}},
	}
	recv := newReceiver(t, func(n int) answer {
		if n < len(failures) {
			return failures[n]
		}
		return answer{}
	})
	sub := createSub(t, c, client.Fields{"model": "call", "domain": "flaky.example", "post-url": recv.URL(), "batch-max": 50})
	statuses := watchStatus(t, c, sub.ID)

	const total = 200
	ids := mustIngest(t, a, callEvents("flaky.example", 0, 10))
	waitFor(t, func() (bool, string, string) {
		n := recv.PostCount()
		return n >= 1, "the first POST (answered 500)", fmt.Sprint(n, " POSTs")
	}, 10*time.Second)
	for seq := 10; seq < total; seq += 10 {
		ids = append(ids, mustIngest(t, a, callEvents("flaky.example", seq, 10))...)
	}
	ingestDone := time.Now()

	recv.WaitDistinct(t, total, 20*time.Second)
	posts, events := recv.Snapshot()
	if len(posts) < len(failures)+1 {
		t.Fatalf("%d POSTs, want at least %d", len(posts), len(failures)+1)
	}
	for i, f := range failures {
		if posts[i].status != f.status {
			t.Errorf("POST %d answered %d, want %d", i, posts[i].status, f.status)
		}
	}
	firstOK := posts[len(failures)]
	if !ingestDone.Before(firstOK.at) {
		t.Errorf("all events were ingested at %s, after the receiver recovered at %s: not during the failure",
			ingestDone.Format(time.StampMilli), firstOK.at.Format(time.StampMilli))
	}
	// The failing batch was retried with the same body and webhook-id.
	for i := 1; i <= len(failures); i++ {
		p := posts[i]
		if !bytes.Equal(p.body, posts[0].body) || p.header.Get("webhook-id") != posts[0].header.Get("webhook-id") {
			t.Errorf("attempt %d: webhook-id %s body %.80s; first attempt: webhook-id %s body %.80s",
				i+1, p.header.Get("webhook-id"), p.body, posts[0].header.Get("webhook-id"), posts[0].body)
		}
	}
	// Backoff after a 500 (1s ±20%) and Retry-After: 1 after the 503.
	for _, i := range []int{1, 3} {
		if gap := posts[i].at.Sub(posts[i-1].at); gap < 750*time.Millisecond {
			t.Errorf("attempt %d came %s after attempt %d: retried without waiting", i+1, gap, i)
		}
	}
	t.Logf("retries at +%s, +%s, +%s after the first attempt", posts[1].at.Sub(posts[0].at).Round(time.Millisecond),
		posts[2].at.Sub(posts[0].at).Round(time.Millisecond), posts[3].at.Sub(posts[0].at).Round(time.Millisecond))
	checkSignatures(t, posts, sub.Secret, "whsec_"+strings.Repeat("A", 43)+"=")

	if len(events) != total {
		t.Errorf("receiver accepted %d events, want exactly %d", len(events), total)
	}
	for i, ev := range events {
		if i < total && (ev.seq != int64(i) || ev.ID != ids[i]) {
			t.Fatalf("accepted event %d: seq %d id %s; want seq %d id %s (order kept)", i, ev.seq, ev.ID, i, ids[i])
		}
	}

	nOK := 0
	for _, p := range posts {
		if p.status == http.StatusOK {
			nOK++
		}
	}
	// posts-count counts every attempt (NetSapiens), error-count the
	// failed ones: the receiver saw them all.
	v := waitSub(t, c, sub.ID, "active with every event and every attempt counted", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.EventsCount == total && v.PostsCount == uint64(len(posts)) &&
			v.ErrorCount == uint64(len(posts)-nOK) && v.Lag == 0
	}, 10*time.Second)
	if v.ErrorCount < uint64(len(failures)) || v.PostsCount < v.ErrorCount+uint64(nOK) {
		t.Errorf("posts-count %d, error-count %d, %d successful: want error-count at least %d and posts-count at least errors + successes",
			v.PostsCount, v.ErrorCount, nOK, len(failures))
	}
	if v.LastError == "" || !strings.Contains(v.LastError, "503") || v.LastErrorTime == "" {
		t.Errorf("last-error %q at %q, want the 503 and its time", v.LastError, v.LastErrorTime)
	}
	var h []string
	waitFor(t, func() (bool, string, string) {
		h = statuses.history()
		e := indexOf(h, "error", 0)
		return e >= 0 && indexOf(h, "active", e+1) >= 0, "status error, then active", fmt.Sprint(h)
	}, 5*time.Second)
	t.Logf("status history %v; %s", h, subSummary(v))
}

// TestKill9MidStreamLosesNothing ingests continuously while the receiver is
// being delivered to, SIGKILLs the agent mid-stream, restarts it on the
// same data dir, and checks that every event whose ingest was answered 202
// is delivered at least once, duplicates keeping their event-id and body.
func TestKill9MidStreamLosesNothing(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	recv := newReceiver(t, nil)
	sub := createSub(t, c, client.Fields{"model": "call", "domain": "kill.example", "post-url": recv.URL()})

	const (
		total     = 3000
		perReq    = 10
		killAfter = 1000
	)
	var (
		mu         sync.Mutex
		accepted   []string
		ingestErr  error // an error outside the kill
		unanswered int   // requests lost to the kill (outcome unknown)
		killed     atomic.Bool
	)
	restarted := make(chan struct{}) // closed once the agent is ready again
	ingesterDone := make(chan struct{})
	// The ingester sends seq 0..total-1 in requests of perReq, one at a
	// time, like a PBX: a request that fails while the agent is down is
	// given up (its outcome is unknown) and ingest goes on once it is back.
	go func() {
		defer close(ingesterDone)
		for seq := 0; seq < total; seq += perReq {
			body, _ := json.Marshal(callEvents("kill.example", seq, perReq))
			res, err := ingestRaw(a, "application/json", body)
			if err == nil && res.status != http.StatusAccepted {
				err = fmt.Errorf("status %d: %s", res.status, res.body)
			}
			mu.Lock()
			switch {
			case err == nil:
				accepted = append(accepted, res.EventIDs...)
			case killed.Load():
				unanswered++
			default:
				ingestErr = err
			}
			mu.Unlock()
			if err != nil {
				if !killed.Load() {
					return
				}
				<-restarted
			}
			if seq == 0 {
				// Let delivery get under way (the new subscription is
				// assigned and the lease renewed within moments), so the
				// kill lands mid-stream with ingest still going.
				deadline := time.Now().Add(20 * time.Second)
				for recv.Distinct() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
	}()
	countAccepted := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted)
	}
	// Mid-stream: enough accepted, and delivery under way (a new
	// subscription is assigned and the node's lease renewed within
	// moments of its creation, but ingest may be faster than that).
	waitFor(t, func() (bool, string, string) {
		n, d := countAccepted(), recv.Distinct()
		return n >= killAfter && d > 0, fmt.Sprintf("%d events accepted and some delivered", killAfter),
			fmt.Sprintf("%d accepted, %d delivered", n, d)
	}, 20*time.Second)

	killed.Store(true)
	deliveredAtKill := recv.Distinct()
	mu.Lock()
	preKill := append([]string(nil), accepted...)
	mu.Unlock()
	acceptedAtKill := len(preKill)
	killedAt := time.Now()
	a.Kill()
	killDone := time.Now()
	t.Logf("SIGKILL with %d events accepted, %d delivered", acceptedAtKill, deliveredAtKill)
	if deliveredAtKill == 0 {
		t.Errorf("nothing had been delivered when the agent was killed: not mid-stream")
	}

	a.Start()
	readyAt := time.Now()
	close(restarted)
	t.Logf("restart until ready: %s", readyAt.Sub(killedAt).Round(time.Millisecond))
	c = a.API()
	recv.WaitIDs(t, preKill, 20*time.Second)
	caughtUp := time.Since(readyAt)
	select {
	case <-ingesterDone:
	case <-time.After(20 * time.Second):
		t.Fatal("the ingester did not finish after the restart")
	}
	mu.Lock()
	if ingestErr != nil {
		t.Fatalf("ingest failed outside the kill: %v", ingestErr)
	}
	if len(accepted) <= acceptedAtKill {
		t.Fatalf("no event accepted after the restart (%d accepted in all)", len(accepted))
	}
	mu.Unlock()
	// Same log, same incarnation: event ids continue.
	inc := func(id string) string { return id[:strings.LastIndexByte(id, '-')] }
	if inc(accepted[0]) != inc(accepted[len(accepted)-1]) {
		t.Errorf("event ids before (%s) and after (%s) the restart have different log incarnations", accepted[0], accepted[len(accepted)-1])
	}

	recv.WaitIDs(t, accepted, 20*time.Second)
	recovered := time.Since(readyAt)

	_, events := recv.Snapshot()
	acc := make(map[string]bool, len(accepted))
	for _, id := range accepted {
		acc[id] = true
	}
	bodies := map[string][]byte{}
	times := map[string]int{}
	firstAt := map[string]time.Time{}
	notAccepted := 0
	lastSeq := int64(-1)
	for _, ev := range events {
		times[ev.ID]++
		if prev, ok := bodies[ev.ID]; ok {
			if !bytes.Equal(prev, ev.raw) {
				t.Errorf("duplicate of %s differs:\nfirst %s\nagain %s", ev.ID, prev, ev.raw)
			}
			continue
		}
		bodies[ev.ID], firstAt[ev.ID] = ev.raw, ev.at
		if !acc[ev.ID] {
			notAccepted++ // durable, but its 202 was lost to the kill
		}
		// First deliveries keep the log's (= ingest) order.
		if ev.seq <= lastSeq {
			t.Errorf("event %s (seq %d) first delivered after seq %d: out of order", ev.ID, ev.seq, lastSeq)
		}
		lastSeq = ev.seq
	}
	if len(bodies) < len(accepted) {
		t.Errorf("%d distinct events delivered, fewer than the %d accepted", len(bodies), len(accepted))
	}
	// The restart resumes from the last committed cursor: the duplicates
	// are exactly the events delivered before the kill from some seq on
	// (those after that cursor), a contiguous run, and nothing older.
	dupLo, dups := int64(-1), 0
	var dupSince time.Time
	for _, ev := range events {
		if times[ev.ID] > 1 && ev.at.Before(killDone) && (dupLo < 0 || ev.seq < dupLo) {
			dupLo, dupSince = ev.seq, ev.at
		}
	}
	for id, n := range times {
		dups += n - 1
		if n > 2 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	if dupLo >= 0 {
		for _, ev := range events {
			if !ev.at.Before(killDone) {
				break
			}
			if redelivered := times[ev.ID] > 1; redelivered != (ev.seq >= dupLo) {
				t.Errorf("event seq %d delivered before the kill: redelivered %v; want the duplicates to be the run from seq %d on", ev.seq, redelivered, dupLo)
			}
		}
	}
	window := time.Duration(0)
	if !dupSince.IsZero() {
		window = killDone.Sub(dupSince)
	}
	t.Logf("kill -9 mid-stream: %d accepted, %d deliveries of %d distinct events: %d duplicates (the events first delivered in the last %s before the kill), "+
		"%d delivered without a 202 (of %d requests lost to the kill); the events accepted before the kill were all delivered %s after the restart was ready "+
		"(%s after the kill), every accepted event %s after it",
		len(accepted), len(events), len(bodies), dups, window.Round(time.Millisecond), notAccepted, unanswered,
		caughtUp.Round(time.Millisecond), readyAt.Add(caughtUp).Sub(killedAt).Round(time.Millisecond), recovered.Round(time.Millisecond))

	waitSub(t, c, sub.ID, "active, lag 0", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.Lag == 0
	}, 10*time.Second)
}

// TestHangingEndpointDoesNotDelayOthers has one subscription's receiver
// never answer while another's is healthy: the healthy one gets every event
// promptly, and the hanging one turns to error once its timeout expires.
func TestHangingEndpointDoesNotDelayOthers(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	hang := newReceiver(t, func(int) answer { return answer{hang: true} })
	ok := newReceiver(t, nil)
	const timeout = 8 * time.Second // longer than the bound B is held to
	subA := createSub(t, c, client.Fields{"model": "call", "domain": "hang.example", "post-url": hang.URL(),
		"timeout-ms": timeout.Milliseconds()})
	subB := createSub(t, c, client.Fields{"model": "call", "domain": "hang.example", "post-url": ok.URL()})

	const rounds, perRound = 5, 10
	const bound = 5 * time.Second
	var ids []string
	var firstHang time.Time
	for r := range rounds {
		sent := time.Now()
		got := mustIngest(t, a, callEvents("hang.example", r*perRound, perRound))
		if d := time.Since(sent); d > 2*time.Second {
			t.Errorf("ingest round %d took %s", r, d)
		}
		ids = append(ids, got...)
		ok.WaitIDs(t, ids, 2*bound)
		_, events := ok.Snapshot()
		for _, ev := range events[len(events)-perRound:] {
			if lat := ev.at.Sub(sent); lat > bound {
				t.Errorf("event %s reached the healthy receiver %s after its ingest (bound %s)", ev.ID, lat, bound)
			}
		}
		if r == 0 {
			// A's first POST carries the same first event and hangs.
			waitFor(t, func() (bool, string, string) {
				n := hang.Hanging()
				return n >= 1, "a POST held by the hanging receiver", fmt.Sprint(n)
			}, bound)
			posts, _ := hang.Snapshot()
			firstHang = posts[0].at
		}
	}
	if time.Since(firstHang) < timeout-time.Second {
		// Still within A's first attempt: exactly that POST is held.
		if n, p := hang.Hanging(), hang.PostCount(); n != 1 || p != 1 {
			t.Errorf("the hanging receiver holds %d of %d POSTs, want 1 of 1 (one POST in flight per subscription)", n, p)
		}
		v, err := c.GetSub(context.Background(), subA.ID)
		if err != nil {
			t.Fatal(err)
		}
		if v.Status != "pending" || v.EventsCount != 0 {
			t.Errorf("A before its timeout: %s, want pending (no answer yet)", subSummary(v))
		}
	}
	t.Logf("healthy subscription got all %d events; the hanging POST has been held for %s", len(ids), time.Since(firstHang).Round(time.Millisecond))

	if _, evs := hang.Snapshot(); len(evs) != 0 {
		t.Fatalf("the hanging receiver accepted %d events", len(evs))
	}
	waitSub(t, c, subB.ID, "B active, every event counted, lag 0", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.EventsCount == uint64(len(ids)) && v.Lag == 0 && v.ErrorCount == 0
	}, 10*time.Second)
	v := waitSub(t, c, subA.ID, "A in error after its timeout", func(v httpapi.SubView) bool {
		return v.Status == "error" && v.ErrorCount >= 1
	}, timeout+8*time.Second)
	if after := time.Since(firstHang); after < timeout-500*time.Millisecond {
		t.Errorf("A turned to error %s after its POST began, before its %s timeout", after, timeout)
	}
	if !strings.Contains(v.LastError, "timed out") && !strings.Contains(v.LastError, "no answer") {
		t.Errorf("A's last-error %q does not say it timed out", v.LastError)
	}
	if v.Lag != uint64(len(ids)) {
		t.Errorf("A's lag is %d, want %d (every event matched, none delivered)", v.Lag, len(ids))
	}
	t.Logf("A: %s", subSummary(v))
}

// TestRetentionDropsAndCounts keeps events for 1 s: a subscription whose
// receiver is down and a paused one lose the events to retention, and
// count them as dropped; once they recover, none of those events arrives;
// a healthy subscription got them all and dropped none.
func TestRetentionDropsAndCounts(t *testing.T) {
	a := startPipelineAgent(t, "--retention", "1s", "--trim-interval", "200ms")
	c := a.API()
	ctx := context.Background()
	var down atomic.Bool
	down.Store(true)
	healthy := newReceiver(t, nil)
	failing := newReceiver(t, func(int) answer {
		if down.Load() {
			return answer{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "1"}}
		}
		return answer{}
	})
	pausedRecv := newReceiver(t, nil)
	f := func(u string) client.Fields {
		return client.Fields{"model": "call", "domain": "ret.example", "post-url": u}
	}
	subH := createSub(t, c, f(healthy.URL()))
	subD := createSub(t, c, f(failing.URL()))
	subP := createSub(t, c, f(pausedRecv.URL()))
	if _, err := c.PauseSub(ctx, subP.ID, true); err != nil {
		t.Fatalf("pause: %v", err)
	}

	const total = 50
	var ids []string
	for seq := 0; seq < total; seq += 10 {
		ids = append(ids, mustIngest(t, a, callEvents("ret.example", seq, 10))...)
	}
	healthy.WaitIDs(t, ids, 10*time.Second)
	waitFor(t, func() (bool, string, string) {
		n := failing.PostCount()
		return n >= 1, "a POST to the failing receiver", fmt.Sprint(n)
	}, 10*time.Second)

	for _, s := range []httpapi.SubView{subD, subP} {
		waitSub(t, c, s.ID, fmt.Sprintf("dropped-count %d", total), func(v httpapi.SubView) bool {
			return v.DroppedCount >= total
		}, 10*time.Second)
	}
	vH := waitSub(t, c, subH.ID, "all delivered, none dropped", func(v httpapi.SubView) bool {
		return v.EventsCount == total && v.Lag == 0
	}, 5*time.Second)
	if vH.DroppedCount != 0 {
		t.Errorf("healthy subscription: dropped-count %d, want 0", vH.DroppedCount)
	}

	// Recover: the receiver answers again, the paused subscription resumes.
	down.Store(false)
	if _, err := c.PauseSub(ctx, subP.ID, false); err != nil {
		t.Fatalf("resume: %v", err)
	}
	marker := mustIngest(t, a, callEvent("ret.example", 1000))
	failing.WaitIDs(t, marker, 10*time.Second)
	pausedRecv.WaitIDs(t, marker, 10*time.Second)
	healthy.WaitIDs(t, marker, 10*time.Second)
	for name, r := range map[string]*receiver{"receiver-down": failing, "paused": pausedRecv} {
		_, evs := r.Snapshot()
		if len(evs) != 1 {
			var seqs []int64
			for _, ev := range evs {
				seqs = append(seqs, ev.seq)
			}
			t.Errorf("%s subscription: got events with seq %v after retention dropped them; want only the marker (1000)", name, seqs)
		}
	}
	for name, s := range map[string]httpapi.SubView{"receiver-down": subD, "paused": subP, "healthy": subH} {
		wantDropped, wantEvents := uint64(total), uint64(1)
		if s.ID == subH.ID {
			wantDropped, wantEvents = 0, total+1
		}
		v := waitSub(t, c, s.ID, fmt.Sprintf("%s: active, lag 0, events-count %d (nothing of the dropped ones)", name, wantEvents),
			func(v httpapi.SubView) bool {
				return v.Lag == 0 && v.Status == "active" && v.EventsCount >= wantEvents
			}, 10*time.Second)
		if v.EventsCount != wantEvents {
			t.Errorf("%s subscription: events-count %d, want %d", name, v.EventsCount, wantEvents)
		}
		if v.DroppedCount != wantDropped {
			t.Errorf("%s subscription: dropped-count %d, want %d", name, v.DroppedCount, wantDropped)
		}
		t.Logf("%s: %s", name, subSummary(v))
	}
}

// TestReplayRedelivers delivers 20 events, replays the subscription from a
// time before them, and checks they arrive again with the same event-ids
// and bodies, in order.
func TestReplayRedelivers(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	recv := newReceiver(t, nil)
	sub := createSub(t, c, client.Fields{"model": "call", "domain": "replay.example", "post-url": recv.URL()})
	before := time.Now().Add(-time.Second)
	var ids []string
	ids = append(ids, mustIngest(t, a, callEvents("replay.example", 0, 10))...)
	ids = append(ids, mustIngest(t, a, callEvents("replay.example", 10, 10))...)
	recv.WaitIDs(t, ids, 10*time.Second)
	waitSub(t, c, sub.ID, "20 events counted", func(v httpapi.SubView) bool { return v.EventsCount == 20 && v.Lag == 0 }, 10*time.Second)
	_, first := recv.Snapshot()
	if len(first) != 20 {
		t.Fatalf("got %d events before the replay, want 20", len(first))
	}

	if _, err := c.ReplaySub(context.Background(), sub.ID, before); err != nil {
		t.Fatalf("replay: %v", err)
	}
	waitFor(t, func() (bool, string, string) {
		_, evs := recv.Snapshot()
		return len(evs) >= 40, "40 deliveries (20, then the replayed 20)", fmt.Sprint(len(evs))
	}, 10*time.Second)
	_, evs := recv.Snapshot()
	if len(evs) != 40 {
		t.Fatalf("%d deliveries, want 40", len(evs))
	}
	for i, ev := range evs[20:] {
		if ev.ID != ids[i] || !bytes.Equal(ev.raw, first[i].raw) {
			t.Errorf("replayed event %d: %s %s; want %s %s", i, ev.ID, ev.raw, ids[i], first[i].raw)
		}
	}
	waitSub(t, c, sub.ID, "40 events counted", func(v httpapi.SubView) bool {
		return v.EventsCount == 40 && v.Lag == 0 && v.Status == "active"
	}, 10*time.Second)
}

// TestIngestBadInput sends a process bad input of every kind, and
// receivers that redirect or are gone: each gets its 4xx or its status,
// nothing refused is stored, and the node still serves and delivers.
func TestIngestBadInput(t *testing.T) {
	a := startPipelineAgent(t)
	c := a.API()
	ctx := context.Background()
	node := a.ID
	good := newReceiver(t, nil)
	redirectTarget := newReceiver(t, nil)
	redirect := newReceiver(t, func(int) answer {
		return answer{status: http.StatusFound, header: map[string]string{"Location": redirectTarget.URL()}}
	})
	gone := newReceiver(t, func(int) answer { return answer{status: http.StatusGone} })
	f := func(u string) client.Fields {
		return client.Fields{"model": "call", "domain": "bad.example", "post-url": u}
	}
	subGood := createSub(t, c, f(good.URL()))
	subRedirect := createSub(t, c, f(redirect.URL()))
	subGone := createSub(t, c, f(gone.URL()))

	refused := func(what string, ct string, body []byte, want int, wantInError string) {
		t.Helper()
		res, err := ingestRaw(a, ct, body)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.status != want {
			t.Fatalf("%s: status %d, want %d: %.300s", what, res.status, want, res.body)
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(res.body), &e); err != nil || e.Error == "" {
			t.Errorf("%s: the answer is not a JSON error: %.300s", what, res.body)
		}
		if !strings.Contains(strings.ToLower(e.Error), wantInError) {
			t.Errorf("%s: error %q does not mention %q", what, e.Error, wantInError)
		}
	}
	refused("malformed JSON", "application/json", []byte(`{"model":"call","domain":"bad.example",`), 400, "")
	refused("an event without model", "application/json", []byte(`{"domain":"bad.example","seq":1}`), 400, "model")
	refused("an array whose second event has no model", "application/json",
		[]byte(`[{"model":"call","domain":"bad.example","seq":2},{"domain":"bad.example","seq":3}]`), 400, "event 1")
	refused("an unsupported Content-Type", "application/xml", []byte(`<event/>`), 415, "content-type")

	big := bytes.Repeat([]byte("x"), 5<<20)
	copy(big, `[{"model":"call","domain":"bad.example","pad":"`)
	refused("a 5 MiB body", "application/json", big, 413, "4 mib")
	// The same without Content-Length (chunked): caught while reading.
	res, err := ingestRawReader(a, "application/json", io.MultiReader(bytes.NewReader(big)))
	if err != nil || res.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 5 MiB chunked body: %v, status %d, want 413", err, res.status)
	}

	var many bytes.Buffer
	many.WriteByte('[')
	for i := range 10001 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"model":"call","domain":"bad.example","seq":%d}`, 100+i)
	}
	many.WriteByte(']')
	refused("10,001 events", "application/json", many.Bytes(), 413, "10000")

	// Reserved fields are replaced.
	forged := map[string]any{"model": "call", "domain": "bad.example", "seq": 7,
		"event-id": "forged-1", "node": "forged-node", "ingest-time": 1}
	before := time.Now()
	forgedID := mustIngest(t, a, forged)[0]
	if forgedID == "forged-1" {
		t.Fatalf("the 202 answer echoes the source's event-id")
	}
	good.WaitIDs(t, []string{forgedID}, 10*time.Second)
	_, evs := good.Snapshot()
	if len(evs) != 1 {
		t.Fatalf("the receiver got %d events, want only the one accepted (nothing of the refused requests)", len(evs))
	}
	fd := evs[0].fields
	ingestMs, _ := fd["ingest-time"].(json.Number).Int64()
	if fd["event-id"] != forgedID || fd["node"] != node || ingestMs < before.UnixMilli()-1000 {
		t.Errorf("reserved fields: event-id %v node %v ingest-time %v; want %s, %s and the ingest time", fd["event-id"], fd["node"], fd["ingest-time"], forgedID, node)
	}
	if bytes.Count(evs[0].raw, []byte(`"event-id"`)) != 1 || bytes.Contains(evs[0].raw, []byte("forged")) {
		t.Errorf("the delivered event still carries a forged field: %s", evs[0].raw)
	}

	// A receiver that redirects: not followed, an error.
	vr := waitSub(t, c, subRedirect.ID, "error, a redirect counted as a failure", func(v httpapi.SubView) bool {
		return v.Status == "error" && v.ErrorCount >= 1
	}, 10*time.Second)
	if !strings.Contains(vr.LastError, "redirect") || vr.EventsCount != 0 {
		t.Errorf("redirecting receiver: %s; want last-error about the redirect, no event counted", subSummary(vr))
	}
	if redirect.PostCount() < 1 {
		t.Errorf("the redirecting receiver got no POST")
	}

	// A receiver answering 410: suspended after one POST, and it stops.
	vg := waitSub(t, c, subGone.ID, "suspended after 410", func(v httpapi.SubView) bool {
		return v.Status == "suspended"
	}, 10*time.Second)
	if !strings.Contains(vg.LastError, "410") {
		t.Errorf("gone receiver: last-error %q, want the 410", vg.LastError)
	}

	// The node still serves, and a good event is still delivered.
	if err := a.Anon().Do(ctx, http.MethodGet, "/healthz", nil, nil); err != nil {
		t.Fatalf("/healthz: %v", err)
	}
	last := mustIngest(t, a, callEvent("bad.example", 8))
	good.WaitIDs(t, last, 10*time.Second)
	if _, evs := good.Snapshot(); len(evs) != 2 {
		t.Errorf("the good receiver got %d events, want 2", len(evs))
	}
	waitSub(t, c, subGood.ID, "active, 2 events", func(v httpapi.SubView) bool {
		return v.Status == "active" && v.EventsCount == 2 && v.Lag == 0
	}, 10*time.Second)
	// The gone subscription stays stopped: still one POST, still suspended.
	if n := gone.PostCount(); n != 1 {
		t.Errorf("the gone receiver got %d POSTs, want 1", n)
	}
	if v, err := c.GetSub(ctx, subGone.ID); err != nil || v.Status != "suspended" {
		t.Errorf("gone subscription: %v %s, want suspended", err, subSummary(v))
	}
	if n := redirectTarget.PostCount(); n != 0 {
		t.Errorf("the redirect was followed: its target got %d POSTs", n)
	}
	if !a.Running() {
		t.Fatalf("the agent exited")
	}
}
