// Command ws benchmarks hookswitch's websocket fan-out: many websocket
// clients, each with its own filter, receive the events ingested at a
// fixed rate; it reports the delivery latency the clients see and the
// node's CPU and memory.
//
// Usage, from anywhere inside the repository:
//
//	go run ./integration/bench/ws [flags]
//	go run ./integration/bench/ws -clients 1000 -rate 5000 -duration 10s   # the defaults
//
// What a run does (loopback only; bounded: at most 5,000 clients,
// 50,000 events/s and 60 s of load):
//
//  1. Raises this process's open-file limit to its hard limit (the node,
//     a child, inherits it), builds the binary (`go build` in the
//     repository root; -hookswitch-bin skips it) and runs `hookswitch
//     agent --dev` on free 127.0.0.1 ports in its own process group, and
//     waits until its root token is accepted. -node-addr uses a running
//     loopback node instead (-token; -node-pid to sample its CPU/memory).
//  2. Connects -clients websocket clients to /v1/events/ws (bearer token),
//     each sending a filter message on domain d<i mod -domains>.bench.test
//     and waiting for its success reply. Each event's domain is drawn
//     uniformly from the -domains domains, so it reaches clients/domains
//     clients (10 with the defaults: 50,000 deliveries/s at 5,000 events/s).
//  3. Warm-up: one probe event per domain; waits until every client has
//     its probe.
//  4. Load: -senders concurrent POST /v1/events of -batch events each,
//     paced by an absolute schedule to -rate events/s, for -duration.
//     Each event is about -event-bytes of JSON: {"model":"call","domain":
//     ...,"user":"u1","bench-seq":n,"bench-ts":<unix ns when its request
//     was encoded, just before it is sent>,"pad":"x…"}.
//  5. Drain: until every expected delivery arrived, nothing arrived for
//     3 s, or -drain-max.
//  6. Prints one JSON object (and writes it to -json-out).
//
// Every client records, per delivery, receive time − bench-ts (e2e: ingest
// request, fsync, hub, websocket) and receive time − ingest-time (from
// durable, at the millisecond resolution of ingest-time), checks the
// event's domain is the one it filters on, and detects duplicates by
// bench-seq. The node's CPU is (utime+stime) from /proc/<pid>/stat over
// the load window; its memory is VmRSS from /proc/<pid>/status, sampled
// every 250 ms. This process's own CPU (the clients and the load
// generator share the machine with the node) is reported too.
//
// Output keys (latencies in ms):
//
//	clients, domains, rate, duration_s, events_sent, events_accepted
//	expected_deliveries, delivered, missing, duplicates, misrouted, disconnected
//	delivery_e2e_ms {count,p50,p90,p99,p999,max}   bench-ts → client receive
//	delivery_from_durable_ms {…}                    ingest-time → client receive
//	ingest_ack_ms {…}                               per ingest request
//	node_cpu_percent (of one core, over the load), node_rss_mib_{start,peak,end}, node_threads
//	bench_cpu_percent (this process, over the load)
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// Hard bounds of a run.
const (
	maxClients  = 5000
	maxRate     = 50000
	maxDuration = 60 * time.Second
	maxDrain    = 2 * time.Minute
)

type config struct {
	clients, domains, rate, batch, senders, eventBytes int
	duration, drainMax                                 time.Duration
	bin, nodeAddr, token, jsonOut                      string
	nodePid                                            int
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/ws: "+format+"\n", args...)
}

func main() {
	var c config
	flag.IntVar(&c.clients, "clients", 1000, "websocket clients (max 5000)")
	flag.IntVar(&c.domains, "domains", 100, "domains the clients filter on (client i: domain i mod domains)")
	flag.IntVar(&c.rate, "rate", 5000, "events per second (max 50000)")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "load duration (max 60s)")
	flag.IntVar(&c.batch, "batch", 50, "events per ingest request")
	flag.IntVar(&c.senders, "senders", 4, "concurrent ingest requests")
	flag.IntVar(&c.eventBytes, "event-bytes", 200, "approximate size of one event's JSON")
	flag.DurationVar(&c.drainMax, "drain-max", 30*time.Second, "longest wait for deliveries after the load")
	flag.StringVar(&c.bin, "hookswitch-bin", "", "use this hookswitch binary instead of building one")
	flag.StringVar(&c.nodeAddr, "node-addr", "", "use a running node on loopback (host:port) instead of starting one")
	flag.StringVar(&c.token, "token", os.Getenv("HOOKSWITCH_TOKEN"), "super token of -node-addr")
	flag.IntVar(&c.nodePid, "node-pid", 0, "pid of -node-addr's process, to sample its CPU and memory")
	flag.StringVar(&c.jsonOut, "json-out", "", "also write the result to this file")
	flag.Parse()
	if err := run(c); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func (c *config) check() error {
	switch {
	case c.clients < 1 || c.clients > maxClients:
		return fmt.Errorf("-clients must be 1..%d", maxClients)
	case c.rate < 1 || c.rate > maxRate:
		return fmt.Errorf("-rate must be 1..%d", maxRate)
	case c.duration <= 0 || c.duration > maxDuration:
		return fmt.Errorf("-duration must be in (0, %s]", maxDuration)
	case c.domains < 1 || c.domains > c.clients:
		return errors.New("-domains must be 1..clients")
	case c.batch < 1 || c.batch > 10000 || c.senders < 1 || c.senders > 64:
		return errors.New("-batch must be 1..10000 and -senders 1..64")
	case c.drainMax <= 0 || c.drainMax > maxDrain:
		return fmt.Errorf("-drain-max must be in (0, %s]", maxDrain)
	}
	if c.nodeAddr != "" {
		host, _, err := net.SplitHostPort(c.nodeAddr)
		if err != nil {
			return fmt.Errorf("-node-addr: %w", err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return errors.New("-node-addr must be a loopback address")
		}
		if c.token == "" {
			return errors.New("-node-addr needs -token (or HOOKSWITCH_TOKEN)")
		}
	}
	return nil
}

func run(c config) error {
	if err := c.check(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < uint64(c.clients)+256 {
		return fmt.Errorf("open-file limit %d is too low for %d clients (ulimit -n)", lim.Cur, c.clients)
	}
	addr, token, pid := c.nodeAddr, c.token, c.nodePid
	if addr == "" {
		// The node runs through the integration harness: built once
		// (unless -hookswitch-bin), started with --dev on free loopback
		// ports, stopped (and its temporary dir removed) at the end.
		tb := harness.MainTB()
		defer tb.Close()
		if c.bin != "" {
			harness.UseBinary(c.bin)
		} else {
			defer harness.RemoveBinary()
		}
		n := harness.StartDev(tb, "--config", "/dev/null")
		addr, token, pid = n.HTTPAddr, n.RootToken(), n.Pid()
		logf("node pid %d on %s", pid, addr)
	}

	// Clients.
	logf("connecting %d clients", c.clients)
	clients := make([]*client, c.clients)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var dialErr atomic.Value
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cl, err := dial(ctx, addr, token, i, domainOf(i%c.domains))
			if err != nil {
				dialErr.Store(fmt.Errorf("client %d: %w", i, err))
				return
			}
			clients[i] = cl
		}()
	}
	wg.Wait()
	defer func() {
		for _, cl := range clients {
			if cl != nil {
				_ = cl.c.CloseNow()
			}
		}
	}()
	if err, _ := dialErr.Load().(error); err != nil {
		return err
	}
	var readers sync.WaitGroup
	for _, cl := range clients {
		readers.Add(1)
		go func() { defer readers.Done(); cl.read(ctx) }()
	}

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.senders + 1}}
	ingestURL := "http://" + addr + "/v1/events"

	// Warm-up: one probe per domain.
	var probes []string
	for d := range c.domains {
		probes = append(probes, fmt.Sprintf(`{"model":"call","domain":%q,"probe":true}`, domainOf(d)))
	}
	if _, err := post(ctx, hc, ingestURL, []byte("["+strings.Join(probes, ",")+"]")); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	if err := waitUntil(ctx, 30*time.Second, func() bool {
		for _, cl := range clients {
			if cl.probes.Load() == 0 {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("warm-up: not every client got its probe: %w", err)
	}
	logf("warm-up done; load: %d events/s for %s", c.rate, c.duration)

	// Load.
	total := int(float64(c.rate) * c.duration.Seconds())
	perDomain := make([]int64, c.domains)
	domainSeq := make([]int, total)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range domainSeq {
		domainSeq[i] = rng.IntN(c.domains)
		perDomain[domainSeq[i]]++
	}
	pad := strings.Repeat("x", max(0, c.eventBytes-110))
	var sampler procSampler
	if pid > 0 {
		sampler.start(pid)
	}
	var selfStart syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfStart)
	loadStart := time.Now()
	startSample, _ := sampleProcIf(pid)
	acks := make([][]time.Duration, c.senders)
	var accepted atomic.Int64
	var sendErr atomic.Value
	batches := (total + c.batch - 1) / c.batch
	next := atomic.Int64{}
	var senders sync.WaitGroup
	for s := range c.senders {
		senders.Add(1)
		go func() {
			defer senders.Done()
			var buf bytes.Buffer
			for {
				k := int(next.Add(1)) - 1
				if k >= batches || ctx.Err() != nil {
					return
				}
				at := loadStart.Add(time.Duration(float64(k*c.batch) / float64(c.rate) * float64(time.Second)))
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				buf.Reset()
				buf.WriteByte('[')
				ts := time.Now().UnixNano()
				for j := k * c.batch; j < min(total, (k+1)*c.batch); j++ {
					if j > k*c.batch {
						buf.WriteByte(',')
					}
					fmt.Fprintf(&buf, `{"model":"call","domain":%q,"user":"u1","bench-seq":%d,"bench-ts":%d,"pad":%q}`, domainOf(domainSeq[j]), j, ts, pad)
				}
				buf.WriteByte(']')
				d, err := post(ctx, hc, ingestURL, buf.Bytes())
				if err != nil {
					sendErr.Store(err)
					return
				}
				acks[s] = append(acks[s], d)
				accepted.Add(int64(min(total, (k+1)*c.batch) - k*c.batch))
			}
		}()
	}
	senders.Wait()
	loadEnd := time.Now()
	endSample, _ := sampleProcIf(pid)
	var selfEnd syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfEnd)
	if err, _ := sendErr.Load().(error); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	logf("sent %d events in %s; draining", accepted.Load(), loadEnd.Sub(loadStart).Round(time.Millisecond))

	// Drain.
	var expected int64
	for i := range clients {
		expected += perDomain[i%c.domains]
	}
	delivered := func() int64 {
		var n int64
		for _, cl := range clients {
			n += cl.got.Load()
		}
		return n
	}
	last, lastChange := int64(-1), time.Now()
	drainStart := time.Now()
	for time.Since(drainStart) < c.drainMax && ctx.Err() == nil {
		n := delivered()
		if n >= expected {
			break
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 3*time.Second {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	finalSample, _ := sampleProcIf(pid)
	sampler.stop()
	for _, cl := range clients {
		_ = cl.c.CloseNow()
	}
	readers.Wait()

	// Results.
	var e2e, durable, ack []time.Duration
	var dups, misrouted, disconnected int64
	for _, cl := range clients {
		e2e = append(e2e, cl.e2e...)
		durable = append(durable, cl.durable...)
		dups += cl.dups
		misrouted += cl.misrouted
		if cl.closedEarly {
			disconnected++
		}
	}
	for _, a := range acks {
		ack = append(ack, a...)
	}
	got := delivered()
	loadSecs := loadEnd.Sub(loadStart).Seconds()
	res := map[string]any{
		"clients": c.clients, "domains": c.domains, "rate": c.rate, "duration_s": c.duration.Seconds(),
		"event_bytes": c.eventBytes, "batch": c.batch, "senders": c.senders,
		"events_sent": total, "events_accepted": accepted.Load(), "load_s": round(loadSecs, 3),
		"expected_deliveries": expected, "delivered": got - dups, "missing": max(0, expected-(got-dups)),
		"duplicates": dups, "misrouted": misrouted, "disconnected": disconnected,
		"deliveries_per_s":         round(float64(got)/loadSecs, 0),
		"delivery_e2e_ms":          dist(e2e),
		"delivery_from_durable_ms": dist(durable),
		"ingest_ack_ms":            dist(ack),
		"bench_cpu_percent":        round(100*(rusageCPU(selfEnd)-rusageCPU(selfStart)).Seconds()/loadSecs, 1),
	}
	if pid > 0 {
		res["node_pid"] = pid
		res["node_cpu_percent"] = round(100*(endSample.cpu-startSample.cpu).Seconds()/endSample.at.Sub(startSample.at).Seconds(), 1)
		res["node_cpu_percent_incl_drain"] = round(100*(finalSample.cpu-startSample.cpu).Seconds()/finalSample.at.Sub(startSample.at).Seconds(), 1)
		res["node_rss_mib_start"] = round(float64(startSample.rssKiB)/1024, 1)
		res["node_rss_mib_peak"] = round(float64(max(sampler.peakRSS(), finalSample.rssKiB, endSample.rssKiB))/1024, 1)
		res["node_rss_mib_end"] = round(float64(finalSample.rssKiB)/1024, 1)
		res["node_threads"] = finalSample.threads
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	if c.jsonOut != "" {
		if err := os.WriteFile(c.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

func domainOf(d int) string { return fmt.Sprintf("d%03d.bench.test", d) }

func post(ctx context.Context, hc *http.Client, u string, body []byte) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusAccepted {
		return d, fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, data)
	}
	return d, nil
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// client is one websocket client.
type client struct {
	c      *websocket.Conn
	domain []byte // `"domain":"dNNN.bench.test"`
	got    atomic.Int64
	probes atomic.Int64
	// Owned by read until it returns.
	e2e, durable []time.Duration
	seen         map[int]struct{}
	dups         int64
	misrouted    int64
	closedEarly  bool
}

func dial(ctx context.Context, addr, token string, i int, domain string) (*client, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws://"+addr+"/v1/events/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + token}},
	})
	if err != nil {
		return nil, err
	}
	corr := "c" + strconv.Itoa(i)
	msg, _ := json.Marshal(map[string]any{"type": "filter", "correlationId": corr,
		"filters": []map[string]string{{"property": "domain", "value": domain}}})
	if err := c.Write(dctx, websocket.MessageText, msg); err != nil {
		c.CloseNow()
		return nil, err
	}
	_, data, err := c.Read(dctx)
	if err != nil {
		c.CloseNow()
		return nil, err
	}
	var r struct {
		Type, CorrelationID string
	}
	if err := json.Unmarshal(data, &r); err != nil || r.Type != "success" || r.CorrelationID != corr {
		c.CloseNow()
		return nil, fmt.Errorf("filter reply %s", data)
	}
	return &client{c: c, domain: []byte(`"domain":"` + domain + `"`), seen: map[int]struct{}{}}, nil
}

// read receives until the connection ends, measuring each delivery.
func (cl *client) read(ctx context.Context) {
	for {
		_, data, err := cl.c.Read(ctx)
		now := time.Now()
		if err != nil {
			if websocket.CloseStatus(err) != -1 {
				cl.closedEarly = true // closed by the node (e.g. too slow)
			}
			return
		}
		if !bytes.Contains(data, cl.domain) {
			cl.misrouted++
		}
		if bytes.Contains(data, []byte(`"probe":true`)) {
			cl.probes.Add(1)
			continue
		}
		seq, ok1 := intField(data, `"bench-seq":`)
		ts, ok2 := intField(data, `"bench-ts":`)
		it, ok3 := intField(data, `"ingest-time":`)
		if !ok1 || !ok2 || !ok3 {
			cl.misrouted++
			continue
		}
		if _, dup := cl.seen[int(seq)]; dup {
			cl.dups++
		}
		cl.seen[int(seq)] = struct{}{}
		cl.e2e = append(cl.e2e, now.Sub(time.Unix(0, ts)))
		cl.durable = append(cl.durable, now.Sub(time.UnixMilli(it)))
		cl.got.Add(1)
	}
}

// intField reads the integer after key in a JSON text.
func intField(data []byte, key string) (int64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(key):]
	j := 0
	for j < len(rest) && (rest[j] == '-' || rest[j] >= '0' && rest[j] <= '9') {
		j++
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

func dist(d []time.Duration) map[string]any {
	if len(d) == 0 {
		return map[string]any{"count": 0}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) float64 {
		return round(float64(s[min(len(s)-1, int(p*float64(len(s))))])/1e6, 3)
	}
	return map[string]any{"count": len(s), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
		"max": round(float64(s[len(s)-1])/1e6, 3)}
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

func rusageCPU(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

func sampleProcIf(pid int) (procSample, error) {
	if pid <= 0 {
		return procSample{at: time.Now()}, nil
	}
	return sampleProc(pid)
}

// procSampler records the node's peak RSS every 250ms.
type procSampler struct {
	stopc chan struct{}
	done  chan struct{}
	peak  atomic.Int64
}

func (s *procSampler) start(pid int) {
	s.stopc, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if ps, err := sampleProc(pid); err == nil && ps.rssKiB > s.peak.Load() {
				s.peak.Store(ps.rssKiB)
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
}

func (s *procSampler) stop() {
	if s.stopc != nil {
		close(s.stopc)
		<-s.done
	}
}

func (s *procSampler) peakRSS() int64 { return s.peak.Load() }
