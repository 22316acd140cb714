package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// got is one delivered event.
type got struct {
	log  string // the incarnation part of the event-id: the source log
	seq  uint64 // the seq part: the order in that log
	sent int64  // unix ns the bench put in the event
	at   time.Time
}

// receiver is the webhook endpoint (json-array posts) on 127.0.0.1.
type receiver struct {
	srv   *http.Server
	url   string
	posts atomic.Int64

	mu     sync.Mutex
	byID   map[string]int    // deliveries per event-id
	first  map[string]got    // first delivery
	order  []time.Time       // receive time of each POST, in arrival order
	bodies map[string][]byte // first body, to check duplicates are identical
	differ int
	bad    int
	dups   []dupAt // every delivery after an event's first
}

type dupAt struct {
	id string
	at time.Time
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{byID: map[string]int{}, first: map[string]got{}, bodies: map[string][]byte{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve), ReadHeaderTimeout: 10 * time.Second}
	r.url = "http://" + ln.Addr().String() + "/hook"
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

type wireEvent struct {
	ID   string `json:"event-id"`
	Src  string `json:"src"`
	Mseq int64  `json:"mseq"`
	Sent int64  `json:"sent"`
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	evs := make([]wireEvent, len(raws))
	for i, raw := range raws {
		_ = json.Unmarshal(raw, &evs[i])
	}
	r.posts.Add(1)
	r.mu.Lock()
	r.order = append(r.order, at)
	for i, ev := range evs {
		if ev.ID == "" {
			r.bad++
			continue
		}
		r.byID[ev.ID]++
		if r.byID[ev.ID] == 1 {
			g := got{sent: ev.Sent, at: at}
			if i := strings.LastIndexByte(ev.ID, '-'); i > 0 {
				g.log = ev.ID[:i]
				g.seq, _ = strconv.ParseUint(ev.ID[i+1:], 10, 64)
			}
			r.first[ev.ID] = g
			r.bodies[ev.ID] = raws[i]
		} else {
			r.dups = append(r.dups, dupAt{ev.ID, at})
			if !bytes.Equal(r.bodies[ev.ID], raws[i]) {
				r.differ++
			}
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// missing counts the ids not delivered yet.
func (r *receiver) missing(ids []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, id := range ids {
		if r.byID[id] == 0 {
			n++
		}
	}
	return n
}

// waitIDs waits until every id is delivered, or timeout; it returns the
// number still missing.
func (r *receiver) waitIDs(ids []string, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		m := r.missing(ids)
		if m == 0 || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stats of the given ids: duplicates, and the first deliveries' latency
// and time span.
type stats struct {
	Delivered  int          `json:"delivered_unique"`
	Duplicates int          `json:"duplicates"`
	Lost       int          `json:"lost"`
	Differ     int          `json:"duplicates_with_other_body"`
	Latency    latencyStats `json:"e2e_latency_ms"`
	lastAt     time.Time
}

type latencyStats struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func (r *receiver) stats(ids []string) stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s stats
	lat := make([]float64, 0, len(ids))
	for _, id := range ids {
		n := r.byID[id]
		if n == 0 {
			s.Lost++
			continue
		}
		s.Delivered++
		s.Duplicates += n - 1
		g := r.first[id]
		lat = append(lat, float64(g.at.UnixNano()-g.sent)/1e6)
		if g.at.After(s.lastAt) {
			s.lastAt = g.at
		}
	}
	s.Differ = r.differ
	s.Latency = latencies(lat)
	return s
}

func latencies(ms []float64) latencyStats {
	if len(ms) == 0 {
		return latencyStats{}
	}
	sort.Float64s(ms)
	q := func(p float64) float64 {
		return math.Round(ms[int(p*float64(len(ms)-1))]*10) / 10
	}
	return latencyStats{Count: len(ms), P50: q(0.5), P90: q(0.9), P99: q(0.99), Max: q(1)}
}

// dupsAfter counts the repeated deliveries of the given ids received
// after t.
func (r *receiver) dupsAfter(ids []string, t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	for _, d := range r.dups {
		if want[d.id] && d.at.After(t) {
			n++
		}
	}
	return n
}

// firstPostAfter is the receive time of the first POST after t.
func (r *receiver) firstPostAfter(t time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, at := range r.order {
		if at.After(t) {
			return at
		}
	}
	return time.Time{}
}

// outOfOrder counts first deliveries that came before an earlier event
// of the same source log (by the seq in the event-id).
func (r *receiver) outOfOrder() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	type fd struct {
		seq uint64
		at  time.Time
	}
	bySrc := map[string][]fd{}
	for _, g := range r.first {
		bySrc[g.log] = append(bySrc[g.log], fd{g.seq, g.at})
	}
	bad := 0
	for _, l := range bySrc {
		sort.Slice(l, func(i, j int) bool { return l[i].seq < l[j].seq })
		for i := 1; i < len(l); i++ {
			if l[i].at.Before(l[i-1].at) {
				bad++
			}
		}
	}
	return bad
}

// sender posts events to one node's /v1/events.
type sender struct {
	client *http.Client
}

func newSender() *sender {
	return &sender{client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
}

// post sends events mseq from..from+n-1 of src with the current time; it
// returns the event-ids of a 202.
func (s *sender) post(addr, domain, src string, from, n int) ([]string, error) {
	now := time.Now().UnixNano()
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		m := from + i
		fmt.Fprintf(&b, `{"model":"call","domain":%q,"user":"u%d","src":%q,"mseq":%d,"sent":%d,"orig_callid":"%s-%d","term_to_uri":"sip:100@%s"}`,
			domain, m%7, src, m, now, src, m, domain)
	}
	b.WriteByte(']')
	resp, err := s.client.Post("http://"+addr+"/v1/events", "application/json", &b)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("ingest on %s: %s: %.200s", addr, resp.Status, body)
	}
	var res struct {
		IDs []string `json:"event-ids"`
	}
	if err := json.Unmarshal(body, &res); err != nil || len(res.IDs) != n {
		return nil, fmt.Errorf("ingest on %s: bad answer %.200s", addr, body)
	}
	return res.IDs, nil
}

// load is the ingest of one run: per node, workers post batches, paced
// to rate events/s in all (0: as fast as they can), until max events are
// accepted in all or the duration is over, or stop is closed. A node
// whose request fails stops being sent to (it may have been killed).
type load struct {
	mu       sync.Mutex
	accepted map[string][]string // node id → event-ids
	total    int
	errs     map[string]string
	start    time.Time
	end      time.Time
	stop     chan struct{}
	wg       sync.WaitGroup
}

type target struct {
	id, addr string
}

func startLoad(s *sender, nodes []target, domain string, batch, workers, rate, max int, dur time.Duration) *load {
	l := &load{accepted: map[string][]string{}, errs: map[string]string{}, start: time.Now(), stop: make(chan struct{})}
	deadline := l.start.Add(dur)
	streams := len(nodes) * workers
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(batch*streams) / float64(rate))
	}
	for _, nd := range nodes {
		var next atomic.Int64
		var dead atomic.Bool
		for w := range workers {
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				due := l.start.Add(time.Duration(w) * interval / time.Duration(workers))
				for !dead.Load() {
					if interval > 0 {
						if d := time.Until(due); d > 0 {
							select {
							case <-l.stop:
								return
							case <-time.After(d):
							}
						}
						due = due.Add(interval)
					}
					select {
					case <-l.stop:
						return
					default:
					}
					l.mu.Lock()
					full := l.total >= max
					l.mu.Unlock()
					if full || time.Now().After(deadline) {
						return
					}
					from := int(next.Add(int64(batch))) - batch
					ids, err := s.post(nd.addr, domain, nd.id, from, batch)
					l.mu.Lock()
					if err != nil {
						dead.Store(true)
						l.errs[nd.id] = err.Error()
					} else {
						l.accepted[nd.id] = append(l.accepted[nd.id], ids...)
						l.total += len(ids)
					}
					l.mu.Unlock()
				}
			}()
		}
	}
	return l
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// wait waits for the workers and returns what each node accepted.
func (l *load) wait() map[string][]string {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.end.IsZero() {
		l.end = time.Now()
	}
	out := map[string][]string{}
	for k, v := range l.accepted {
		out[k] = v
	}
	return out
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
}

func all(m map[string][]string) []string {
	var out []string
	for _, ids := range m {
		out = append(out, ids...)
	}
	return out
}
