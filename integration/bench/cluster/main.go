// Command cluster benchmarks the event mesh: a three-node cluster of real
// `hookswitch agent` processes on loopback, one subscription (sent by
// whichever node the cluster assigns it to), events ingested on all three
// nodes, and a webhook receiver in this process.
//
//	go run ./integration/bench/cluster                      # both timing sets
//	go run ./integration/bench/cluster -timings short -json-out /tmp/c.json
//
// For each timing set (default: DESIGN.md's defaults; short: report
// 100ms, lease 400ms, down-after 800ms, stable-after 1s, raft 200ms, trim
// 200ms) it starts a fresh cluster and runs:
//
//  1. throughput: every node ingests batches of -batch events with
//     -workers concurrent senders per node, as fast as it answers, until
//     -events are accepted or -duration passes; then waits for every
//     accepted event at the receiver. delivered_events_per_s is unique
//     deliveries / (first send → last first delivery); e2e_latency_ms is
//     "sent" (unix ns written into each event just before its request) →
//     receipt, over first deliveries.
//  2. latency: the same at a fixed total rate (-latency-rate events/s,
//     batches of -latency-batch) for -latency-duration.
//  3. failover, twice: the subscription's owner is a follower, then the
//     raft leader (its id is picked by the assignment rule's rendezvous
//     hash, the earlier subscriptions being deleted); every node ingests at -failover-rate
//     events/s in all (batches of 20) for -failover-duration; after
//     -kill-after the owner is killed with SIGKILL and ingest goes on on
//     the survivors. gap_ms is the kill → the first POST the receiver gets
//     from the new owner (the first POST beginning 100ms or more after the
//     dead process was reaped: nobody can take over before down-after).
//     The survivors' events are awaited with the dead node down, then it
//     is restarted on its data dir (--join) and its events are awaited.
//     duplicates counts deliveries beyond the first; lost counts accepted
//     events never delivered (must be 0).
//
// With -single (default true) the throughput run is also made against one
// `agent --dev` node first, for the cluster/single ratio. The result is
// one JSON object on stdout (progress on stderr).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

type config struct {
	bin             string
	timings         string
	events          int
	duration        time.Duration
	batch           int
	workers         int
	latencyRate     int
	latencyBatch    int
	latencyDuration time.Duration
	failRate        int
	failDuration    time.Duration
	killAfter       time.Duration
	single          bool
	jsonOut         string
	keep            bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "hookswitch-bin", "", "use this hookswitch binary instead of building one")
	flag.StringVar(&cfg.timings, "timings", "both", "default, short or both")
	flag.IntVar(&cfg.events, "events", 150000, "throughput run: events to ingest in all")
	flag.DurationVar(&cfg.duration, "duration", 20*time.Second, "throughput run: longest ingest")
	flag.IntVar(&cfg.batch, "batch", 100, "throughput run: events per ingest request")
	flag.IntVar(&cfg.workers, "workers", 2, "concurrent senders per node")
	flag.IntVar(&cfg.latencyRate, "latency-rate", 1500, "latency run: events/s in all")
	flag.IntVar(&cfg.latencyBatch, "latency-batch", 5, "latency run: events per request")
	flag.DurationVar(&cfg.latencyDuration, "latency-duration", 5*time.Second, "latency run: how long")
	flag.IntVar(&cfg.failRate, "failover-rate", 1500, "failover run: events/s in all")
	flag.DurationVar(&cfg.failDuration, "failover-duration", 12*time.Second, "failover run: how long the ingest lasts")
	flag.DurationVar(&cfg.killAfter, "kill-after", 3*time.Second, "failover run: ingest time before the owner is killed")
	flag.BoolVar(&cfg.single, "single", true, "also run the throughput run against one dev node")
	flag.StringVar(&cfg.jsonOut, "json-out", "", "also write the JSON result here")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the nodes' data dirs and logs (agent.stdout and agent.stderr per node) and print where")
	flag.Parse()
	var sets []timingSet
	switch cfg.timings {
	case "both":
		sets = []timingSet{timingSets["default"], timingSets["short"]}
	case "default", "short":
		sets = []timingSet{timingSets[cfg.timings]}
	default:
		fmt.Fprintln(os.Stderr, "-timings: default, short or both")
		os.Exit(2)
	}
	res, err := run(cfg, sets)
	if err != nil {
		res.Error = err.Error()
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	if cfg.jsonOut != "" {
		_ = os.WriteFile(cfg.jsonOut, append(out, '\n'), 0o644)
	}
	if err != nil {
		os.Exit(1)
	}
}

type result struct {
	OK       bool         `json:"ok"`
	Error    string       `json:"error,omitempty"`
	Single   *throughput  `json:"single_node,omitempty"`
	Clusters []clusterRun `json:"clusters"`
	Env      env          `json:"env"`
}

type env struct {
	CPUs     int    `json:"cpus"`
	Settings string `json:"settings"`
}

type clusterRun struct {
	Timings    timingSet   `json:"timings"`
	Throughput *throughput `json:"throughput,omitempty"`
	// RatioToSingle is delivered_events_per_s / the single node's.
	RatioToSingle float64     `json:"throughput_ratio_to_single,omitempty"`
	Latency       *paced      `json:"latency,omitempty"`
	Failover      []*failover `json:"failover,omitempty"`
}

type throughput struct {
	Nodes          int     `json:"ingest_nodes"`
	Owner          string  `json:"owner"`
	Accepted       int     `json:"accepted"`
	IngestSeconds  float64 `json:"ingest_s"`
	IngestPerS     float64 `json:"ingest_events_per_s"`
	DeliveredPerS  float64 `json:"delivered_events_per_s"`
	OutOfOrder     int     `json:"out_of_order_per_source"`
	StoppedBy      string  `json:"stopped_by"`
	IngestFailures string  `json:"ingest_failures,omitempty"`
	stats
}

type paced struct {
	Rate     int    `json:"rate_events_per_s"`
	Batch    int    `json:"batch"`
	Owner    string `json:"owner"`
	Accepted int    `json:"accepted"`
	stats
}

type failover struct {
	Case            string  `json:"case"`
	Rate            int     `json:"rate_events_per_s"`
	Owner           string  `json:"killed_owner"`
	OwnerWasLeader  bool    `json:"killed_was_leader"`
	NewOwner        string  `json:"new_owner"`
	ReassignMs      float64 `json:"kill_to_reassign_ms"`
	GapMs           float64 `json:"gap_ms"`
	GapTarget       string  `json:"gap_target"`
	AcceptedTotal   int     `json:"accepted"`
	AcceptedByDead  int     `json:"accepted_by_killed"`
	SurvivorsDoneMs float64 `json:"survivors_events_all_delivered_ms"`
	DeadDoneMs      float64 `json:"killed_node_events_all_delivered_ms"`
	Duplicates      int     `json:"duplicates"`
	// DupsAfterRestart are the duplicates received after the killed
	// node was started again (not caused by the takeover itself).
	DupsAfterRestart int          `json:"duplicates_after_restart"`
	Lost             int          `json:"lost"`
	Differ           int          `json:"duplicates_with_other_body"`
	OutOfOrder       int          `json:"out_of_order_per_source"`
	Latency          latencyStats `json:"e2e_latency_ms"`
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(cfg config, sets []timingSet) (result, error) {
	res := result{Env: env{CPUs: runtime.NumCPU(), Settings: strings.Join(os.Args[1:], " ")}}
	var live []*cluster
	defer func() {
		for _, c := range live {
			c.stop()
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		logf("interrupted: stopping the nodes")
		for _, c := range live {
			c.stop()
		}
		os.Exit(130)
	}()
	// The nodes run through the integration harness, which builds
	// hookswitch once (unless -bin).
	if cfg.bin != "" {
		harness.UseBinary(cfg.bin)
	} else {
		logf("building hookswitch")
		defer harness.RemoveBinary()
	}
	harness.Binary(harness.MainTB())
	snd := newSender()
	if cfg.single {
		logf("single node: starting")
		c := startCluster(1, timingSets["default"], cfg.keep)
		live = append(live, c)
		t, err := runThroughput(cfg, c, snd)
		c.stop()
		if err != nil {
			return res, fmt.Errorf("single node: %w", err)
		}
		res.Single = t
		logf("single node: %.0f delivered events/s, p50 %.1fms p99 %.1fms", t.DeliveredPerS, t.Latency.P50, t.Latency.P99)
	}
	for _, ts := range sets {
		logf("%s timings: starting three nodes", ts.Name)
		c := startCluster(3, ts, cfg.keep)
		live = append(live, c)
		cr := clusterRun{Timings: ts}
		var err error
		cr.Throughput, err = runThroughput(cfg, c, snd)
		if err != nil {
			res.Clusters = append(res.Clusters, cr)
			return res, fmt.Errorf("%s: throughput: %w", ts.Name, err)
		}
		if res.Single != nil && res.Single.DeliveredPerS > 0 {
			cr.RatioToSingle = round2(cr.Throughput.DeliveredPerS / res.Single.DeliveredPerS)
		}
		logf("%s: %.0f delivered events/s (%.2f of single), p50 %.1fms p99 %.1fms", ts.Name,
			cr.Throughput.DeliveredPerS, cr.RatioToSingle, cr.Throughput.Latency.P50, cr.Throughput.Latency.P99)
		if cr.Latency, err = runPaced(cfg, c, snd); err != nil {
			res.Clusters = append(res.Clusters, cr)
			return res, fmt.Errorf("%s: latency: %w", ts.Name, err)
		}
		logf("%s: at %d events/s: p50 %.1fms p99 %.1fms", ts.Name, cfg.latencyRate, cr.Latency.Latency.P50, cr.Latency.Latency.P99)
		// The owner killed: a follower first, then the raft leader (whose
		// death also costs an election).
		for _, leaderOwner := range []bool{false, true} {
			f, err := runFailover(cfg, c, snd, leaderOwner)
			if f != nil {
				cr.Failover = append(cr.Failover, f)
			}
			if err != nil {
				res.Clusters = append(res.Clusters, cr)
				return res, fmt.Errorf("%s: failover: %w", ts.Name, err)
			}
			logf("%s: failover (%s): gap %.0fms, %d duplicates, %d lost", ts.Name, f.Case, f.GapMs, f.Duplicates, f.Lost)
		}
		res.Clusters = append(res.Clusters, cr)
		c.stop()
	}
	res.OK = true
	for _, cr := range res.Clusters {
		if cr.Throughput.Lost != 0 || cr.Latency.Lost != 0 {
			res.OK = false
		}
		for _, f := range cr.Failover {
			if f.Lost != 0 {
				res.OK = false
			}
		}
	}
	return res, nil
}

// newSub creates a subscription (id may be "") to the receiver through a
// running node and waits for its owner. It is deleted when the run ends.
func newSub(c *cluster, r *receiver, domain, id string) (string, string, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := client.Fields{"model": "call", "domain": domain, "post-url": r.url, "batch-max": 1000}
	if id != "" {
		f["id"] = id
	}
	api := c.api(targetsProcs(c)[0])
	v, err := api.CreateSub(ctx, f)
	if err != nil {
		return "", "", func() {}, err
	}
	del := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.api(targetsProcs(c)[0]).DeleteSub(ctx, v.ID); err != nil {
			logf("deleting subscription %s: %v", v.ID, err)
		}
	}
	owner, err := c.owner(v.ID, func(string) bool { return true }, 20*time.Second)
	return v.ID, owner, del, err
}

func targetsProcs(c *cluster) []*harness.Node {
	var out []*harness.Node
	for _, p := range c.nodes {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// subIDFor returns a subscription id the assignment rule gives to want
// when no node sends anything (no other subscriptions): among the stable
// nodes if any, else among the up ones, the highest rendezvous hash.
func subIDFor(c *cluster, want, prefix string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.api(targetsProcs(c)[0]).Cluster(ctx)
	if err != nil {
		return "", err
	}
	var cands []string
	for _, n := range v.Nodes {
		if n.Stable {
			cands = append(cands, n.ID)
		}
	}
	if len(cands) == 0 {
		for _, n := range v.Nodes {
			if n.Health == "up" {
				cands = append(cands, n.ID)
			}
		}
	}
	for i := range 10000 {
		id := fmt.Sprintf("%s-%d", prefix, i)
		best, bestH := "", uint64(0)
		for _, n := range cands {
			if h := fsm.RendezvousHash(id, n); best == "" || h > bestH {
				best, bestH = n, h
			}
		}
		if best == want {
			return id, nil
		}
	}
	return "", fmt.Errorf("no subscription id for %s among %v", want, cands)
}

func targets(c *cluster) []target {
	var out []target
	for _, p := range c.nodes {
		if p.Running() {
			out = append(out, target{p.ID, p.HTTPAddr})
		}
	}
	return out
}

// warmUp sends one event per node and waits for them: the subscription
// has started everywhere before anything is measured.
func warmUp(c *cluster, snd *sender, r *receiver, domain string) error {
	var ids []string
	for _, t := range targets(c) {
		got, err := snd.post(t.addr, domain, t.id, -1, 1)
		if err != nil {
			return err
		}
		ids = append(ids, got...)
	}
	if m := r.waitIDs(ids, 30*time.Second); m != 0 {
		return fmt.Errorf("warm-up: %d events not delivered", m)
	}
	return nil
}

func runThroughput(cfg config, c *cluster, snd *sender) (*throughput, error) {
	r, err := newReceiver()
	if err != nil {
		return nil, err
	}
	defer r.srv.Close()
	domain := "tp.bench.test"
	_, owner, del, err := newSub(c, r, domain, "")
	defer del()
	if err != nil {
		return nil, err
	}
	if err := warmUp(c, snd, r, domain); err != nil {
		return nil, err
	}
	l := startLoad(snd, targets(c), domain, cfg.batch, cfg.workers, 0, cfg.events, cfg.duration)
	accepted := l.wait()
	ids := all(accepted)
	t := &throughput{Nodes: len(targets(c)), Owner: owner, Accepted: len(ids), IngestSeconds: round2(l.end.Sub(l.start).Seconds())}
	t.IngestPerS = math.Round(float64(len(ids)) / l.end.Sub(l.start).Seconds())
	t.StoppedBy = "events"
	if len(ids) < cfg.events {
		t.StoppedBy = "duration"
	}
	if len(l.errs) > 0 {
		t.IngestFailures = fmt.Sprint(l.errs)
	}
	r.waitIDs(ids, 60*time.Second)
	t.stats = r.stats(ids)
	if span := t.lastAt.Sub(l.start).Seconds(); span > 0 {
		t.DeliveredPerS = math.Round(float64(t.Delivered) / span)
	}
	t.OutOfOrder = r.outOfOrder()
	return t, nil
}

func runPaced(cfg config, c *cluster, snd *sender) (*paced, error) {
	r, err := newReceiver()
	if err != nil {
		return nil, err
	}
	defer r.srv.Close()
	domain := "lat.bench.test"
	_, owner, del, err := newSub(c, r, domain, "")
	defer del()
	if err != nil {
		return nil, err
	}
	if err := warmUp(c, snd, r, domain); err != nil {
		return nil, err
	}
	l := startLoad(snd, targets(c), domain, cfg.latencyBatch, 1, cfg.latencyRate, math.MaxInt, cfg.latencyDuration)
	ids := all(l.wait())
	r.waitIDs(ids, 60*time.Second)
	return &paced{Rate: cfg.latencyRate, Batch: cfg.latencyBatch, Owner: owner, Accepted: len(ids), stats: r.stats(ids)}, nil
}

func runFailover(cfg config, c *cluster, snd *sender, leaderOwner bool) (*failover, error) {
	if err := c.waitUp(60 * time.Second); err != nil {
		return nil, err
	}
	r, err := newReceiver()
	if err != nil {
		return nil, err
	}
	defer r.srv.Close()
	leader := c.leader()
	want, kase := leader, "owner is the raft leader"
	if !leaderOwner {
		kase = "owner is a follower"
		for _, p := range c.nodes {
			if p.ID != leader {
				want = p.ID
				break
			}
		}
	}
	id, err := subIDFor(c, want, "fo")
	if err != nil {
		return nil, err
	}
	domain := "fo.bench.test"
	sub, owner, del, err := newSub(c, r, domain, id)
	defer del()
	if err != nil {
		return nil, err
	}
	if err := warmUp(c, snd, r, domain); err != nil {
		return nil, err
	}
	f := &failover{Case: kase, Rate: cfg.failRate, Owner: owner, OwnerWasLeader: c.leader() == owner,
		GapTarget: fmt.Sprintf("<= down-after (%s) + 2s", c.timing.DownAfter)}
	l := startLoad(snd, targets(c), domain, 20, 1, cfg.failRate, math.MaxInt, cfg.failDuration)
	time.Sleep(cfg.killAfter) // the load runs meanwhile: this only places the kill in it
	dead := c.node(owner)
	killAt := time.Now()
	dead.Kill()
	guard := time.Now().Add(100 * time.Millisecond)
	logf("%s: killed owner %s (leader: %v) with %d events accepted", c.timing.Name, owner, f.OwnerWasLeader, l.count())
	newOwner, err := c.owner(sub, func(o string) bool { return o != owner }, 60*time.Second)
	if err != nil {
		l.halt()
		l.wait()
		return f, err
	}
	f.NewOwner, f.ReassignMs = newOwner, ms(time.Since(killAt))
	accepted := l.wait()
	var survivors, deadIDs []string
	for id, ids := range accepted {
		if id == owner {
			deadIDs = append(deadIDs, ids...)
		} else {
			survivors = append(survivors, ids...)
		}
	}
	f.AcceptedTotal, f.AcceptedByDead = len(survivors)+len(deadIDs), len(deadIDs)
	if m := r.waitIDs(survivors, 60*time.Second); m != 0 {
		logf("%s: %d of the survivors' events not delivered after 60s", c.timing.Name, m)
	}
	f.SurvivorsDoneMs = ms(time.Since(killAt))
	if at := r.firstPostAfter(guard); !at.IsZero() {
		f.GapMs = ms(at.Sub(killAt))
	}
	restartAt := time.Now()
	if err := c.restart(dead); err != nil {
		return f, err
	}
	if m := r.waitIDs(deadIDs, 60*time.Second); m != 0 {
		logf("%s: %d of the killed node's events not delivered after 60s", c.timing.Name, m)
	}
	f.DeadDoneMs = ms(time.Since(killAt))
	st := r.stats(append(survivors, deadIDs...))
	f.Duplicates, f.Lost, f.Differ, f.Latency = st.Duplicates, st.Lost, st.Differ, st.Latency
	f.DupsAfterRestart = r.dupsAfter(append(survivors, deadIDs...), restartAt)
	f.OutOfOrder = r.outOfOrder()
	return f, nil
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e5) / 10 }

func round2(f float64) float64 { return math.Round(f*100) / 100 }
