package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// soakDomain is the domain of every event and subscription of the soak.
const soakDomain = "soak.example"

// userOf is the user a subscription j is scoped to (an event reaches it
// when its "user" list names it).
func userOf(j int) string { return "u" + strconv.Itoa(j) }

// subID is the id of subscription j.
func subID(j int) string { return "soak-" + strconv.Itoa(j) }

// splitmix is a 64-bit mixer: a deterministic pseudo-random sequence from
// any seed.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// matches returns the k distinct subscriptions (of subs) that event i
// reaches: a pure function of i, so the accounting knows them without
// keeping them.
func matches(i uint64, k, subs int) []int {
	return matchesInto(make([]int, 0, min(k, subs)), i, k, subs)
}

// matchesInto is matches appending to out (which it returns).
func matchesInto(out []int, i uint64, k, subs int) []int {
	k = min(k, subs)
	r := i
	for n := len(out) + k; len(out) < n; {
		r = splitmix(r)
		j := int(r % uint64(subs))
		dup := false
		for _, x := range out[n-k:] {
			dup = dup || x == j
		}
		if !dup {
			out = append(out, j)
		}
	}
	return out
}

// pad makes an event about the size of a PBX call event (~400 bytes).
var pad = string(bytes.Repeat([]byte("x"), 200))

// event is the body of event i.
func event(i uint64, k, subs int) map[string]any {
	js := matches(i, k, subs)
	users := make([]string, len(js))
	for n, j := range js {
		users[n] = userOf(j)
	}
	return map[string]any{
		"model": "call", "domain": soakDomain, "user": users,
		"soak-i": i, "orig_callid": "soak-" + strconv.FormatUint(i, 10),
		"term_uri": "sip:" + users[0] + "@" + soakDomain, "pad": pad,
	}
}

// accepted maps each event the cluster accepted, by (log incarnation,
// seq), to the load's index i of it (stored as i+1; 0 = none): 4 bytes an
// event, where a map of id strings would take ten times that.
type accepted struct {
	mu    sync.Mutex
	byInc map[string][]uint32
	n     int
}

func newAccepted() *accepted { return &accepted{byInc: map[string][]uint32{}} }

// add records that the event with the given event-id is event i.
func (a *accepted) add(id string, i uint64) error {
	inc, seq, err := dispatch.ParseEventID(id)
	if err != nil {
		return err
	}
	if seq >= 1<<31 || i >= 1<<32-1 {
		return fmt.Errorf("event %s (load index %d): out of the soak's range", id, i)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.byInc[inc]
	if int(seq) >= len(t) {
		t = append(t, make([]uint32, int(seq)+1-len(t)+len(t)/2)...)
	}
	if t[seq] == 0 {
		a.n++
	}
	t[seq] = uint32(i + 1)
	a.byInc[inc] = t
	return nil
}

// count is the number of accepted events.
func (a *accepted) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// each calls f for every accepted event (in seq order per incarnation).
func (a *accepted) each(f func(inc string, seq uint64, i uint64)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for inc, t := range a.byInc {
		for seq, v := range t {
			if v != 0 {
				f(inc, uint64(seq), uint64(v-1))
			}
		}
	}
}

// index is the load index of an accepted event (ok false if unknown).
func (a *accepted) index(inc string, seq uint64) (uint64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.byInc[inc]
	if seq >= uint64(len(t)) || t[seq] == 0 {
		return 0, false
	}
	return uint64(t[seq] - 1), true
}

// loadStats are the load's counters.
type loadStats struct {
	Offered  int64   `json:"offered"`  // events due at the rate
	Sent     int64   `json:"sent"`     // events sent in requests
	Skipped  int64   `json:"skipped"`  // due but not sent: every worker was busy
	Accepted int64   `json:"accepted"` // answered 202
	Requests int64   `json:"requests"` // requests answered 202
	Errors   int64   `json:"errors"`   // requests not answered 202
	LastErr  string  `json:"last-error,omitempty"`
	Rate     float64 `json:"accepted-per-second"`
}

// loader sends events at a rate to the nodes in turn, each request 1..batch
// events, through a few workers (several requests in flight per node, so
// the nodes' group commit has something to group). When every worker is
// busy, the events due are skipped (counted), never queued without bound.
type loader struct {
	nodes   []*harness.Node
	rate    float64
	batch   int
	workers int
	k, subs int
	hc      *http.Client
	acc     *accepted

	offered, sent, skipped, accepted, requests, errors atomic.Int64
	mu                                                 sync.Mutex
	lastErr                                            string
}

// run sends until ctx ends, then waits for the requests in flight.
func (l *loader) run(ctx context.Context) {
	jobs := make(chan [2]uint64, l.workers)
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Go(func() {
			for j := range jobs {
				l.send(l.nodes[(w+int(j[0]))%len(l.nodes)], j[0], int(j[1]))
			}
		})
	}
	defer wg.Wait()
	defer close(jobs)
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var next uint64 // the next event index
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(l.rate*time.Since(start).Seconds()) - l.offered.Load()
		for due > 0 {
			n := min(int64(1+rand.IntN(l.batch)), due)
			select {
			case jobs <- [2]uint64{next, uint64(n)}:
				l.sent.Add(n)
			default:
				l.skipped.Add(due)
				n = due
			}
			l.offered.Add(n)
			next += uint64(n)
			due -= n
		}
	}
}

// send posts events first..first+n-1 to the node and records the accepted
// ones.
func (l *loader) send(nd *harness.Node, first uint64, n int) {
	evs := make([]map[string]any, n)
	for x := range evs {
		evs[x] = event(first+uint64(x), l.k, l.subs)
	}
	ids, err := l.ingest(nd, evs)
	if err == nil {
		for x, id := range ids {
			if e := l.acc.add(id, first+uint64(x)); e != nil {
				err = e
			}
		}
	}
	if err != nil {
		l.errors.Add(1)
		l.mu.Lock()
		l.lastErr = err.Error()
		l.mu.Unlock()
		return
	}
	l.requests.Add(1)
	l.accepted.Add(int64(len(ids)))
}

// ingest posts the events to the node's /v1/events (loopback needs no
// token) and returns the event-ids of a 202 answer.
func (l *loader) ingest(nd *harness.Node, evs []map[string]any) ([]string, error) {
	body, err := json.Marshal(evs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.BaseURL()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, &harness.IngestError{Node: nd.ID, Status: resp.StatusCode, Body: string(b)}
	}
	var res client.IngestResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("ingest on %s: %v: %.200s", nd.ID, err, b)
	}
	if len(res.EventIDs) != len(evs) {
		return nil, fmt.Errorf("ingest on %s: %d events sent, answer %.200s", nd.ID, len(evs), b)
	}
	return res.EventIDs, nil
}

// stats are the counters so far; Rate is over elapsed.
func (l *loader) stats(elapsed time.Duration) loadStats {
	l.mu.Lock()
	last := l.lastErr
	l.mu.Unlock()
	s := loadStats{Offered: l.offered.Load(), Sent: l.sent.Load(), Skipped: l.skipped.Load(),
		Accepted: l.accepted.Load(), Requests: l.requests.Load(), Errors: l.errors.Load(), LastErr: last}
	if elapsed > 0 {
		s.Rate = float64(s.Accepted) / elapsed.Seconds()
	}
	return s
}
