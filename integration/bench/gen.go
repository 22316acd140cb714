package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ---- events and batches ----

// tsPlaceholder stands for bench-ts in a pre-encoded batch until the batch
// is sent; it has the width of a unix-nanosecond time (19 digits until the
// year 2286) and is valid JSON itself.
const tsPlaceholder = "1000000000000000000"

// mix64 is splitmix64's finaliser: a cheap, well-spread hash of an integer.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// workload is the deterministic shape of a run's events: which domain each
// event is on and which subscriptions each domain has.
type workload struct {
	seed    uint64
	domains int // size of the domain pool
	subs    int // subscriptions (0 in ingest-only mode)
	// subsOnDomain[d] is how many subscriptions are on domain d.
	subsOnDomain []int
}

// newWorkload spreads subs subscriptions over a pool of domains so that an
// event on a random domain matches about fraction of them: the pool has
// round(1/fraction) domains (at least 1, at most subs) and subscription i
// is on domain i mod pool. One subscription, or fraction 1, is one domain
// that every event is on.
func newWorkload(subs int, fraction float64, seed uint64) *workload {
	d := 1
	if fraction > 0 && fraction < 1 {
		d = int(1/fraction + 0.5)
	}
	d = max(1, min(d, max(subs, 1)))
	w := &workload{seed: seed, domains: d, subs: subs, subsOnDomain: make([]int, d)}
	for i := range subs {
		w.subsOnDomain[w.subDomain(i)]++
	}
	return w
}

func (w *workload) subDomain(i int) int { return i % w.domains }

// eventDomain is the domain of event seq: uniform over the pool.
func (w *workload) eventDomain(seq int64) int {
	return int(mix64(uint64(seq)^w.seed) % uint64(w.domains))
}

// matches is how many subscriptions event seq matches.
func (w *workload) matches(seq int64) int { return w.subsOnDomain[w.eventDomain(seq)] }

func domainName(d int) string { return fmt.Sprintf("d%05d.bench.test", d) }

// appendEvent appends event seq as JSON and returns the offset of its
// bench-ts placeholder. About 200 bytes: the fields the matcher looks at,
// the bench stamps, and call fields a PBX would send.
func appendEvent(b []byte, seq int64, domain string) ([]byte, int) {
	h := mix64(uint64(seq))
	b = append(b, `{"model":"call","domain":"`...)
	b = append(b, domain...)
	b = append(b, `","user":"u1","bench-seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"bench-ts":`...)
	off := len(b)
	b = append(b, tsPlaceholder...)
	b = append(b, `,"orig_callid":"`...)
	b = appendHex(b, h, 12)
	b = append(b, `","term_callid":"`...)
	b = appendHex(b, mix64(h), 12)
	b = append(b, `","orig_from_uri":"sip:1`...)
	b = appendPadded(b, int64(h%1000), 3)
	b = append(b, '@')
	b = append(b, domain...)
	b = append(b, `"}`...)
	return b, off
}

func appendHex(b []byte, v uint64, n int) []byte {
	const digits = "0123456789abcdef"
	for i := n - 1; i >= 0; i-- {
		b = append(b, digits[(v>>(4*uint(i)))&0xf])
	}
	return b
}

func appendPadded(b []byte, v int64, width int) []byte {
	s := strconv.FormatInt(v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// batch is one pre-encoded ingest request body: events first..first+n-1 as
// a JSON array (or one object when the run's batch size is 1), with the
// offsets of their bench-ts values, which are stamped just before each send.
type batch struct {
	first int64
	n     int
	body  []byte
	tsOff []int32
}

// stamp writes ts (unix nanoseconds, 19 digits) into every bench-ts.
func (b *batch) stamp(ts int64) {
	var buf [24]byte
	d := strconv.AppendInt(buf[:0], ts, 10)
	if len(d) != len(tsPlaceholder) {
		panic("bench: unix-nanosecond time is not 19 digits")
	}
	for _, off := range b.tsOff {
		copy(b.body[off:], d)
	}
}

// prepareBatches pre-encodes total events in batches of size per request.
func prepareBatches(w *workload, total int64, size int) []*batch {
	names := make([]string, w.domains)
	for d := range names {
		names[d] = domainName(d)
	}
	nb := (total + int64(size) - 1) / int64(size)
	out := make([]*batch, 0, nb)
	for first := int64(0); first < total; first += int64(size) {
		n := int(min(int64(size), total-first))
		b := &batch{first: first, n: n, body: make([]byte, 0, n*215+2), tsOff: make([]int32, 0, n)}
		if size > 1 {
			b.body = append(b.body, '[')
		}
		for i := range n {
			if i > 0 {
				b.body = append(b.body, ',')
			}
			seq := first + int64(i)
			var off int
			b.body, off = appendEvent(b.body, seq, names[w.eventDomain(seq)])
			b.tsOff = append(b.tsOff, int32(off))
		}
		if size > 1 {
			b.body = append(b.body, ']')
		}
		out = append(out, b)
	}
	return out
}

// ---- pacing ----

// pacer releases batches on an absolute schedule: batch k is due at
// start + k*interval. A late wake-up does not shift later batches (the
// generator catches up, token-bucket style, instead of drifting as a
// sleep-per-request loop would). interval 0 means unpaced.
type pacer struct {
	start    time.Time
	perBatch float64 // nanoseconds per batch, fractions kept; 0 = unpaced
	timer    *time.Timer
}

// newPacer paces batches of batchSize events at eventsPerSec (0: unpaced).
func newPacer(start time.Time, eventsPerSec float64, batchSize int) *pacer {
	p := &pacer{start: start}
	if eventsPerSec > 0 {
		p.perBatch = float64(batchSize) / eventsPerSec * 1e9
	}
	return p
}

// due is when batch k may be sent.
func (p *pacer) due(k int64) time.Time {
	return p.start.Add(time.Duration(float64(k) * p.perBatch))
}

// wait blocks until batch k is due (at once when unpaced).
func (p *pacer) wait(ctx context.Context, k int64) error {
	if p.perBatch == 0 {
		return ctx.Err()
	}
	due := p.due(k)
	d := time.Until(due)
	if d > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		select {
		case <-p.timer.C:
		case <-ctx.Done():
			p.timer.Stop()
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// ---- load generator ----

// genConfig is one generator run.
type genConfig struct {
	url         string // POST target
	token       string // bearer token, "" for none
	batches     []*batch
	rate        float64 // events/s, 0 = as fast as possible
	batchSize   int
	duration    time.Duration // stop issuing batches after this long
	concurrency int
	reqTimeout  time.Duration
	// ids, when not nil, receives the event ids the node answered with,
	// indexed by bench-seq.
	ids []string
	// maxConsecErrors aborts the run after this many failed requests in a
	// row (transport errors, 429, 5xx).
	maxConsecErrors int
}

// genResult is what a generator run measured.
type genResult struct {
	Start        time.Time
	LastHandoff  time.Time // when the last batch was handed to a sender
	LastAck      time.Time
	Sent         int64 // events in requests sent
	Accepted     int64 // events acknowledged (2xx)
	Requests     int64
	AckedBatches []bool // by batch index
	Errors       map[string]int64
	FirstError   string
	StoppedBy    string // "events-max", "duration", "interrupted", "error"
	Ack          *sampler
	Lag          *sampler
	AcceptedDiff int64 // requests whose "accepted" differed from the events sent
	Err          error
}

// errFatalStatus is a response that makes retrying pointless (404: no
// pipeline; 400/413: the bench sends bad input; 401/403: auth).
var errFatalStatus = errors.New("fatal ingest response")

type ingestReply struct {
	Accepted *int     `json:"accepted"`
	EventIDs []string `json:"event-ids"`
}

// runGenerator posts cfg.batches to cfg.url with cfg.concurrency requests in
// flight, paced at cfg.rate, until every batch is sent, the duration is
// over, ctx ends or a fatal answer comes back.
func runGenerator(parent context.Context, cfg genConfig, client *http.Client) *genResult {
	res := &genResult{
		Errors:       map[string]int64{},
		AckedBatches: make([]bool, len(cfg.batches)),
		Lag:          newSampler(2_000_000, 2),
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)

	type job struct {
		k int64
	}
	jobs := make(chan job)
	var (
		mu          sync.Mutex // guards res fields written by senders
		consecErrs  atomic.Int64
		lastAckNano atomic.Int64
		wg          sync.WaitGroup
	)
	acks := make([]*sampler, cfg.concurrency)
	for w := range cfg.concurrency {
		acks[w] = newSampler(1_000_000, uint64(w)+10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var respBuf bytes.Buffer
			for j := range jobs {
				b := cfg.batches[j.k]
				t0 := time.Now()
				b.stamp(t0.UnixNano())
				status, reply, err := postBatch(ctx, client, cfg, b, &respBuf)
				ack := time.Since(t0)
				atomic.AddInt64(&res.Requests, 1)
				atomic.AddInt64(&res.Sent, int64(b.n))
				if err == nil && status/100 == 2 {
					consecErrs.Store(0)
					acks[w].add(int64(ack))
					n := b.n
					if reply.Accepted != nil && *reply.Accepted != b.n {
						atomic.AddInt64(&res.AcceptedDiff, 1)
						n = min(*reply.Accepted, b.n)
					}
					atomic.AddInt64(&res.Accepted, int64(n))
					res.AckedBatches[j.k] = true // each index is written by one sender only
					if cfg.ids != nil && len(reply.EventIDs) == b.n {
						for i, id := range reply.EventIDs {
							cfg.ids[b.first+int64(i)] = id
						}
					}
					now := time.Now().UnixNano()
					for {
						old := lastAckNano.Load()
						if now <= old || lastAckNano.CompareAndSwap(old, now) {
							break
						}
					}
					continue
				}
				if ctx.Err() != nil && err != nil {
					// Interrupted or aborted: not the node's fault.
					continue
				}
				key, detail := "transport", ""
				if err != nil {
					detail = err.Error()
				} else {
					key = strconv.Itoa(status)
					detail = fmt.Sprintf("HTTP %d: %s", status, truncate(respBuf.String(), 300))
				}
				mu.Lock()
				res.Errors[key]++
				if res.FirstError == "" {
					res.FirstError = detail
				}
				mu.Unlock()
				switch status {
				case http.StatusNotFound, http.StatusBadRequest, http.StatusRequestEntityTooLarge,
					http.StatusUnauthorized, http.StatusForbidden, http.StatusMethodNotAllowed:
					cancel(fmt.Errorf("%w: %s", errFatalStatus, detail))
					continue
				}
				if cfg.maxConsecErrors > 0 && consecErrs.Add(1) >= int64(cfg.maxConsecErrors) {
					cancel(fmt.Errorf("%d failed ingest requests in a row; last: %s", cfg.maxConsecErrors, detail))
				}
			}
		}()
	}

	res.Start = time.Now()
	p := newPacer(res.Start, cfg.rate, cfg.batchSize)
	endAt := res.Start.Add(cfg.duration)
	res.StoppedBy = "events-max"
dispatch:
	for k := int64(0); k < int64(len(cfg.batches)); k++ {
		if cfg.rate > 0 && !p.due(k).Before(endAt) || cfg.rate == 0 && !time.Now().Before(endAt) {
			res.StoppedBy = "duration"
			break
		}
		if err := p.wait(ctx, k); err != nil {
			break
		}
		select {
		case jobs <- job{k}:
		case <-ctx.Done():
			break dispatch
		}
		res.LastHandoff = time.Now()
		if cfg.rate > 0 {
			// How late the batch left relative to its schedule, including
			// waiting for a free sender.
			res.Lag.add(int64(res.LastHandoff.Sub(p.due(k))))
		}
	}
	close(jobs)
	wg.Wait()
	switch {
	case parent.Err() != nil:
		res.Err = context.Cause(parent)
		res.StoppedBy = "interrupted"
	case ctx.Err() != nil:
		res.Err = context.Cause(ctx)
		res.StoppedBy = "error"
	}
	res.Ack = mergeInto(acks)
	if n := lastAckNano.Load(); n > 0 {
		res.LastAck = time.Unix(0, n)
	}
	return res
}

// mergeInto combines per-sender samplers into one.
func mergeInto(ss []*sampler) *sampler {
	out := &sampler{limit: 1 << 62}
	out.max = -1 << 63
	for _, s := range ss {
		out.s = append(out.s, s.s...)
		out.n += s.n
		out.max = max(out.max, s.max)
	}
	return out
}

// postBatch sends one batch and reads the answer.
func postBatch(ctx context.Context, client *http.Client, cfg genConfig, b *batch, respBuf *bytes.Buffer) (int, ingestReply, error) {
	var reply ingestReply
	rctx, cancel := context.WithTimeout(ctx, cfg.reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, cfg.url, bytes.NewReader(b.body))
	if err != nil {
		return 0, reply, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.token != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, reply, err
	}
	defer resp.Body.Close()
	respBuf.Reset()
	if _, err := io.Copy(respBuf, io.LimitReader(resp.Body, 8<<20)); err != nil {
		return resp.StatusCode, reply, err
	}
	if resp.StatusCode/100 == 2 && respBuf.Len() > 0 {
		// A reply that is not the documented JSON still counts as
		// accepted; only the event ids are lost for verification.
		_ = json.Unmarshal(respBuf.Bytes(), &reply)
	}
	return resp.StatusCode, reply, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
