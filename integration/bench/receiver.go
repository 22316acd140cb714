package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const recvShards = 64

// receiver is the webhook endpoint of the benchmark's subscriptions
// (POST /hook/{index}, index into subIDs), or in raw mode the direct target
// of the generator (POST /raw, answered like an ingest request). It records
// every event's delivery: receive time against the generator's bench-ts,
// deduplication by (subscription, event-id), per-subscription and per-event
// counts.
type receiver struct {
	w      *workload
	raw    bool
	subIDs []string
	total  int64 // events of the run: bench-seq is in [0, total)

	perSeq []atomic.Int32 // unique deliveries of each event
	perSub []atomic.Int64 // unique deliveries to each subscription
	probed []atomic.Bool  // the subscription received its warm-up probe
	seed   maphash.Seed
	shards [recvShards]recvShard

	posts, events, unique, dups        atomic.Int64
	misrouted, corrErrs, missingHeader atomic.Int64
	missingID, badBodies, foreign      atomic.Int64
	probes                             atomic.Int64
	firstRecv, lastRecv                atomic.Int64 // unix nanoseconds of unique deliveries

	// freezeMu: record holds it shared for a whole POST; freeze takes it
	// exclusively to stop counting at one consistent moment.
	freezeMu sync.RWMutex
	frozen   bool

	ln  net.Listener
	srv *http.Server
	url string // base URL, no trailing slash
}

type recvShard struct {
	mu     sync.Mutex
	seen   map[dedupKey]int64 // -> bench-seq
	lat    *sampler
	handle *sampler // time from the handler's start to the answer, per POST
}

// dedupKey identifies one delivery: the subscription and the event-id, or
// (raw mode, or an event without an id) the bench-seq.
type dedupKey struct {
	sub int32
	id  string
	seq int64
}

// recvEvent is the part of a delivered event the receiver reads.
type recvEvent struct {
	EventID string `json:"event-id"`
	Seq     *int64 `json:"bench-seq"`
	TS      int64  `json:"bench-ts"`
	Probe   string `json:"bench-probe"`
}

// newReceiver starts a receiver on 127.0.0.1:0. subIDs is nil in raw mode.
func newReceiver(w *workload, raw bool, subIDs []string, total int64, latencyLimit int) (*receiver, error) {
	r := &receiver{w: w, raw: raw, subIDs: subIDs, total: total, seed: maphash.MakeSeed()}
	nsubs := max(1, len(subIDs))
	r.perSeq = make([]atomic.Int32, total)
	r.perSub = make([]atomic.Int64, nsubs)
	r.probed = make([]atomic.Bool, nsubs)
	for i := range r.shards {
		r.shards[i].seen = make(map[dedupKey]int64)
		r.shards[i].lat = newSampler(max(1, latencyLimit/recvShards), uint64(i)+100)
		r.shards[i].handle = newSampler(100_000, uint64(i)+200)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	mux := http.NewServeMux()
	if raw {
		mux.HandleFunc("POST /raw", r.serve)
	} else {
		mux.HandleFunc("POST /hook/{idx}", r.serve)
	}
	r.ln = ln
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: serverLog("receiver")}
	r.url = "http://" + ln.Addr().String()
	go func() {
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("receiver stopped: %v", err)
		}
	}()
	return r, nil
}

// hookURL is the post-url of subscription i.
func (r *receiver) hookURL(i int) string { return r.url + "/hook/" + strconv.Itoa(i) }

// close stops the receiver. By then nothing it receives counts any more,
// so connections are not waited for long (Shutdown treats a connection that
// never sent a request as busy for 5s).
func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	defer func() {
		sh := &r.shards[uint64(start.UnixNano())%recvShards]
		sh.mu.Lock()
		sh.handle.add(int64(time.Since(start)))
		sh.mu.Unlock()
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 64<<20))
	now := time.Now().UnixNano()
	if err != nil {
		// A cut connection: the sender retries, nothing to record.
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	r.posts.Add(1)
	sub := 0
	if !r.raw {
		sub, err = strconv.Atoi(req.PathValue("idx"))
		if err != nil || sub < 0 || sub >= len(r.subIDs) {
			http.Error(w, "no such subscription", http.StatusNotFound)
			return
		}
		if req.Header.Get("X-Correlation-ID") != r.subIDs[sub] {
			r.corrErrs.Add(1)
		}
		if req.Header.Get("webhook-id") == "" || req.Header.Get("webhook-timestamp") == "" || req.Header.Get("webhook-signature") == "" {
			r.missingHeader.Add(1)
		}
	}
	evs, err := decodeEvents(body)
	if err != nil {
		// Answer 2xx anyway: a 4xx would make hookswitch retry the same
		// body forever. The count shows up in the result.
		r.badBodies.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	r.record(sub, evs, now)
	if r.raw {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"accepted":%d}`, len(evs))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// decodeEvents parses a JSON array of events or one event object.
func decodeEvents(body []byte) ([]recvEvent, error) {
	b := bytes.TrimLeft(body, " \t\r\n")
	if len(b) == 0 {
		return nil, errors.New("empty body")
	}
	if b[0] == '[' {
		var evs []recvEvent
		err := json.Unmarshal(b, &evs)
		return evs, err
	}
	var ev recvEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return nil, err
	}
	return []recvEvent{ev}, nil
}

// record counts the events of one POST to subscription sub, received at now.
func (r *receiver) record(sub int, evs []recvEvent, now int64) {
	r.freezeMu.RLock()
	defer r.freezeMu.RUnlock()
	if r.frozen {
		return
	}
	r.events.Add(int64(len(evs)))
	var fresh int64
	for i := range evs {
		ev := &evs[i]
		if ev.Probe != "" {
			r.probes.Add(1)
			r.probed[sub].Store(true)
			continue
		}
		if ev.Seq == nil || *ev.Seq < 0 || *ev.Seq >= r.total {
			r.foreign.Add(1)
			continue
		}
		seq := *ev.Seq
		key := dedupKey{sub: int32(sub), id: ev.EventID}
		var h uint64
		if key.id == "" {
			if !r.raw {
				r.missingID.Add(1)
			}
			key.seq = seq
			h = mix64(uint64(seq))
		} else {
			h = maphash.String(r.seed, key.id)
		}
		sh := &r.shards[h%recvShards]
		sh.mu.Lock()
		if _, dup := sh.seen[key]; dup {
			sh.mu.Unlock()
			r.dups.Add(1)
			continue
		}
		sh.seen[key] = seq
		sh.lat.add(now - ev.TS)
		sh.mu.Unlock()
		fresh++
		r.perSeq[seq].Add(1)
		r.perSub[sub].Add(1)
		if !r.raw && r.w.eventDomain(seq) != r.w.subDomain(sub) {
			r.misrouted.Add(1)
		}
	}
	if fresh == 0 {
		return
	}
	r.unique.Add(fresh)
	for {
		old := r.lastRecv.Load()
		if now <= old || r.lastRecv.CompareAndSwap(old, now) {
			break
		}
	}
	for {
		old := r.firstRecv.Load()
		if (old != 0 && old <= now) || r.firstRecv.CompareAndSwap(old, now) {
			break
		}
	}
}

// freeze stops counting: POSTs from now on are answered but not recorded.
func (r *receiver) freeze() {
	r.freezeMu.Lock()
	r.frozen = true
	r.freezeMu.Unlock()
}

// probedSubs is how many subscriptions have received their warm-up probe.
func (r *receiver) probedSubs() int {
	n := 0
	for i := range r.probed {
		if r.probed[i].Load() {
			n++
		}
	}
	return n
}

// latency summarizes the end-to-end latencies of unique deliveries.
func (r *receiver) latency() Latency {
	return r.summary(func(sh *recvShard) *sampler { return sh.lat })
}

// handleTime summarizes how long the receiver took to answer a POST once
// its headers were read: if this is small, a slow delivery was not the
// receiver's fault.
func (r *receiver) handleTime() Latency {
	return r.summary(func(sh *recvShard) *sampler { return sh.handle })
}

func (r *receiver) summary(pick func(*recvShard) *sampler) Latency {
	ss := make([]*sampler, 0, recvShards)
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		c := *pick(sh)
		c.s = append([]int64(nil), c.s...)
		sh.mu.Unlock()
		ss = append(ss, &c)
	}
	return mergeSamplers(ss...)
}

// verifyIDs compares the event-ids delivered with the ones the node
// answered the ingest requests with (ids by bench-seq; "" = not known):
// mismatched is deliveries under another id, unknown deliveries whose event
// was not acknowledged with ids.
func (r *receiver) verifyIDs(ids []string) (mismatched, unknown int64) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for k, seq := range sh.seen {
			if k.id == "" {
				continue
			}
			switch want := ids[seq]; {
			case want == "":
				unknown++
			case want != k.id:
				mismatched++
			}
		}
		sh.mu.Unlock()
	}
	return mismatched, unknown
}

// progress is the count the drain loop watches.
func (r *receiver) progress() int64 { return r.unique.Load() + r.dups.Load() }
