// Command soak runs a three-node cluster of `hookswitch agent` processes
// under steady ingest for a long time, with webhook receivers that fail at
// random, and checks that nothing accepted is lost and that the nodes'
// resources stay flat:
//
//	go run ./integration/bench/soak -duration 30m
//	go run ./integration/bench/soak -duration 2m -rate 500 -subs 20
//
// Load: -rate events/s over the three nodes in turn, each request 1 to
// -batch events. Subscriptions: -subs webhook subscriptions (model call,
// domain soak.example, user u<j>); each event names -match of them (a
// fraction) in its "user" list, so it reaches exactly those. The receiver
// answers a POST 500 or 503 (Retry-After: 1) at the rate -fail, never
// answers it at the rate -hang (the subscription's -timeout-ms ends it),
// and 200 otherwise.
//
// Every -sample it prints, per node: RSS (/proc/<pid>/status VmRSS),
// goroutines (go_goroutines of /metrics), open files (/proc/<pid>/fd), the
// sizes of raft.db, events.db and peers/*.db, the events in the local log
// and the raft snapshots taken. When the load stops it waits (at most
// -drain) until every accepted event reached every subscription it
// matches, then prints the accounting and, per node and series, whether it
// stayed flat (docs/reliability.md, "Soak", says what flat means). -json
// prints everything as JSON on stdout instead (samples then go to stderr).
// It exits 1 if an accepted event was lost, delivered where it does not
// match, or a judged series grew beyond its bound.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// config is the command line.
type config struct {
	Duration  time.Duration `json:"duration"`
	Rate      float64       `json:"rate"`
	Subs      int           `json:"subs"`
	Match     float64       `json:"match"`
	PerEvent  int           `json:"subscriptions-per-event"`
	Batch     int           `json:"batch"`
	Workers   int           `json:"workers"`
	Fail      float64       `json:"fail"`
	Hang      float64       `json:"hang"`
	TimeoutMs int           `json:"timeout-ms"`
	Sample    time.Duration `json:"sample"`
	Warmup    time.Duration `json:"warmup"`
	Drain     time.Duration `json:"drain"`
	Timings   string        `json:"timings"`
	JSON      bool          `json:"-"`
	Keep      bool          `json:"-"`
	Bin       string        `json:"-"`
}

// MarshalJSON writes the durations as Go durations ("30m0s").
func (c config) MarshalJSON() ([]byte, error) {
	type plain config // without this method
	return json.Marshal(struct {
		plain
		Duration string `json:"duration"`
		Sample   string `json:"sample"`
		Warmup   string `json:"warmup"`
		Drain    string `json:"drain"`
	}{plain(c), c.Duration.String(), c.Sample.String(), c.Warmup.String(), c.Drain.String()})
}

var timingSets = map[string]harness.Timings{
	// short: the integration tests' timings. With a report every 100 ms
	// the raft log reaches its snapshot threshold within minutes, so a
	// 30-minute soak sees raft compact its log.
	"short": harness.ShortTimings,
	// default: the product's (report 1 s): raft's first compaction
	// comes after about 90 minutes of three nodes' reports.
	"default": {Report: time.Second, Lease: 3 * time.Second, DownAfter: 5 * time.Second,
		StableAfter: 5 * time.Second, RaftHeartbeat: time.Second, RaftElection: time.Second},
}

func main() {
	var c config
	flag.DurationVar(&c.Duration, "duration", 2*time.Minute, "how long the load runs")
	flag.Float64Var(&c.Rate, "rate", 2000, "events per second over all nodes")
	flag.IntVar(&c.Subs, "subs", 100, "webhook subscriptions")
	flag.Float64Var(&c.Match, "match", 0.05, "fraction of the subscriptions each event reaches (at least one)")
	flag.IntVar(&c.Batch, "batch", 5, "events per ingest request: 1 to this many (1: single events)")
	flag.IntVar(&c.Workers, "workers", 24, "ingest requests in flight at most (over all nodes)")
	flag.Float64Var(&c.Fail, "fail", 0.10, "fraction of POSTs the receiver answers 500 or 503 (Retry-After: 1)")
	flag.Float64Var(&c.Hang, "hang", 0.005, "fraction of POSTs the receiver never answers")
	flag.IntVar(&c.TimeoutMs, "timeout-ms", 2000, "the subscriptions' request timeout (ends a hung POST)")
	flag.DurationVar(&c.Sample, "sample", 10*time.Second, "sampling period")
	flag.DurationVar(&c.Warmup, "warmup", 0, "samples before this are not judged (default: the larger of 30s and a tenth of -duration)")
	flag.DurationVar(&c.Drain, "drain", 3*time.Minute, "after the load, how long to wait for every accepted event to be delivered")
	flag.StringVar(&c.Timings, "timings", "short", "cluster timings: short (report 100ms) or default (report 1s)")
	flag.BoolVar(&c.JSON, "json", false, "print the result as JSON on stdout (samples go to stderr)")
	flag.BoolVar(&c.Keep, "keep", false, "keep the nodes' data dirs and logs")
	flag.StringVar(&c.Bin, "bin", "", "hookswitch binary (default: build it)")
	flag.Parse()
	res, err := run(c, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
	if !res.OK {
		os.Exit(1)
	}
}

// result is the soak's outcome.
type result struct {
	Command  string    `json:"command"`
	Config   config    `json:"config"`
	Started  string    `json:"started"`
	Load     loadStats `json:"load"`
	Receiver struct {
		Posts   int64 `json:"posts"`
		Refused int64 `json:"refused"`
		Hung    int64 `json:"hung"`
		BadBody int64 `json:"bad-bodies"`
	} `json:"receiver"`
	Account       account   `json:"account"`
	DrainSeconds  float64   `json:"drain-seconds"` // from the end of the load until nothing was missing; -1: not within -drain
	Interrupted   bool      `json:"interrupted"`   // stopped early by a signal
	Verdicts      []verdict `json:"verdicts"`
	EventsPerNode float64   `json:"events-per-node-per-second"`
	// RetentionBound is what events.db holds at most with the default
	// retention (72h) at this ingest rate: retention-bytes (2 GiB) caps it
	// long before.
	RetentionBound string     `json:"retention-bound"`
	Failures       []string   `json:"failures,omitempty"`
	OK             bool       `json:"ok"`
	Samples        [][]sample `json:"samples"` // rounds × nodes
}

func (c *config) check() error {
	var errs []error
	if c.Duration <= 0 || c.Rate <= 0 || c.Subs < 1 || c.Batch < 1 || c.Workers < 1 || c.Sample <= 0 || c.TimeoutMs < 1 || c.Drain < 0 {
		errs = append(errs, errors.New("-duration, -rate, -subs, -batch, -workers, -sample and -timeout-ms must be positive"))
	}
	if c.Match <= 0 || c.Match > 1 || c.Fail < 0 || c.Hang < 0 || c.Fail+c.Hang >= 1 {
		errs = append(errs, errors.New("-match must be in (0,1]; -fail and -hang at least 0 and together below 1"))
	}
	if _, ok := timingSets[c.Timings]; !ok {
		errs = append(errs, fmt.Errorf("-timings %q: want short or default", c.Timings))
	}
	if c.Warmup == 0 {
		c.Warmup = max(30*time.Second, c.Duration/10)
	}
	c.PerEvent = max(1, int(c.Match*float64(c.Subs)+0.5))
	return errors.Join(errs...)
}

// run runs the soak: out gets the samples and the summary (or the JSON),
// log the progress.
func run(c config, out, log io.Writer) (res result, err error) {
	if err := c.check(); err != nil {
		return res, err
	}
	res.Command = "go run ./integration/bench/soak " + strings.Join(os.Args[1:], " ")
	res.Config = c
	logf := func(format string, args ...any) {
		fmt.Fprintf(log, time.Now().Format("15:04:05")+" "+format+"\n", args...)
	}
	lines := out
	if c.JSON {
		lines = log
	}
	if c.Bin != "" {
		harness.UseBinary(c.Bin)
	} else {
		logf("building %s", harness.ModulePath)
		defer harness.RemoveBinary()
	}
	tb := harness.MainTB()
	tb.Keep = c.Keep
	defer tb.Close()
	harness.Binary(tb)

	rcv := newReceiver(c.Fail, c.Hang)
	base, stopRcv, err := rcv.start()
	if err != nil {
		return res, err
	}
	// Registered before the cluster: the nodes stop first (ending their
	// POSTs), then the receiver.
	tb.Cleanup(stopRcv)

	logf("starting 3 nodes (%s timings)", c.Timings)
	cl := harness.StartCluster(tb, harness.Options{Nodes: 3, Timings: timingSets[c.Timings]})
	if err := createSubs(cl, c, base+"/hook"); err != nil {
		tb.Keep = true
		return res, err
	}
	logf("%d subscriptions assigned; load %.0f events/s for %s, each event to %d of them", c.Subs, c.Rate, c.Duration, c.PerEvent)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 4 * c.Workers, MaxIdleConnsPerHost: c.Workers, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()
	acc := newAccepted()
	ld := &loader{nodes: cl.Nodes, rate: c.Rate, batch: c.Batch, workers: c.Workers, k: c.PerEvent, subs: c.Subs, hc: hc, acc: acc}
	start := time.Now()
	res.Started = start.UTC().Format(time.RFC3339)
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration)
	defer cancel()
	// Ctrl-C (or SIGTERM) during the load ends the load early, during
	// the wait for the backlog ends the wait; the soak still reports and
	// stops its nodes. After that the signals act as usual.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	loadDone := make(chan struct{})
	go func() { defer close(loadDone); ld.run(ctx) }()

	sampleRound := func(phase string) {
		at := time.Since(start)
		round := make([]sample, len(cl.Nodes))
		for i, nd := range cl.Nodes {
			round[i] = sampleNode(nd, hc, at, phase)
		}
		for i := range round {
			for j := range round {
				if j != i {
					round[i].PeerRecords += round[j].Records
					round[i].PeerLogBytes += round[j].LogBytes
				}
			}
			fmt.Fprintln(lines, round[i])
		}
		ls := ld.stats(min(at, c.Duration))
		fmt.Fprintf(lines, "t=%5.0fs %-5s load: accepted %d (%.0f/s), skipped %d, errors %d; receiver: posts %d, refused %d, hung %d, hanging now %d\n",
			at.Seconds(), phase, ls.Accepted, ls.Rate, ls.Skipped, ls.Errors, rcv.posts.Load(), rcv.refused.Load(), rcv.hung.Load(), rcv.hanging.Load())
		res.Samples = append(res.Samples, round)
	}

	tick := time.NewTicker(c.Sample)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-loadDone:
			running = false
		case <-sigs:
			logf("interrupted: stopping the load")
			res.Interrupted = true
			cancel()
		case <-tick.C:
			sampleRound("load")
		}
	}
	loadEnd := time.Now()
	res.Load = ld.stats(loadEnd.Sub(start))
	logf("load done: %d events accepted (%.0f/s), %d skipped (every worker busy), %d requests failed%s",
		res.Load.Accepted, res.Load.Rate, res.Load.Skipped, res.Load.Errors, lastErr(res.Load.LastErr))

	// Wait for the backlog: every accepted event at every subscription it
	// matches, or the drain bound.
	deadline := loadEnd.Add(c.Drain)
	poll := time.NewTicker(2 * time.Second)
	defer poll.Stop()
	var a account
	for {
		a = rcv.account(acc, c.PerEvent, c.Subs, false)
		if a.Lost == 0 {
			res.DrainSeconds = time.Since(loadEnd).Seconds()
			break
		}
		if time.Now().After(deadline) {
			res.DrainSeconds = -1
			break
		}
		select {
		case <-poll.C:
		case <-tick.C:
			sampleRound("drain")
		case <-sigs:
			logf("interrupted: no longer waiting for the backlog")
			res.Interrupted = true
			deadline = time.Now() // account once more, then stop
		}
	}
	signal.Stop(sigs)
	res.Account = rcv.account(acc, c.PerEvent, c.Subs, true)
	res.Receiver.Posts, res.Receiver.Refused, res.Receiver.Hung, res.Receiver.BadBody = rcv.posts.Load(), rcv.refused.Load(), rcv.hung.Load(), rcv.badBody.Load()

	// Verdicts.
	for i, nd := range cl.Nodes {
		var all []sample
		for _, r := range res.Samples {
			all = append(all, r[i])
		}
		res.Verdicts = append(res.Verdicts, judge(nd.ID, all, c.Warmup)...)
	}
	res.EventsPerNode = res.Load.Rate / float64(len(cl.Nodes))
	res.RetentionBound = retentionBound(res)
	if a := res.Account; a.Lost > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d expected deliveries lost after waiting %s: %s", a.Lost, c.Drain, a))
	}
	if res.Account.Unexpected > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d events delivered to a subscription they do not match", res.Account.Unexpected))
	}
	if res.Receiver.BadBody > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d POST bodies the receiver could not read", res.Receiver.BadBody))
	}
	for _, nd := range cl.Nodes {
		if !nd.Running() {
			res.Failures = append(res.Failures, fmt.Sprintf("node %s exited during the soak: %s", nd.ID, nd.ExitState()))
		}
	}
	if res.Load.Accepted == 0 {
		res.Failures = append(res.Failures, "no event was accepted")
	}
	for _, v := range res.Verdicts {
		if v.Judged && !v.OK {
			res.Failures = append(res.Failures, "grew beyond its bound: "+v.String())
		}
	}
	if len(res.Failures) > 0 {
		tb.Keep = true // the nodes' data and logs, for a look
	}
	if res.Interrupted {
		res.Failures = append(res.Failures, "interrupted: the run is incomplete")
	}
	res.OK = len(res.Failures) == 0
	if c.JSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return res, enc.Encode(res)
	}
	summary(out, res)
	return res, nil
}

func lastErr(s string) string {
	if s == "" {
		return ""
	}
	return " (last: " + s + ")"
}

// createSubs creates the subscriptions through n1 and waits until every
// one has an owner.
func createSubs(cl *harness.Cluster, c config, url string) error {
	api := cl.Nodes[0].API()
	for j := range c.Subs {
		ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
		_, err := api.CreateSub(ctx, client.Fields{
			"id": subID(j), "model": "call", "domain": soakDomain, "user": userOf(j),
			"post-url": url, "timeout-ms": c.TimeoutMs, "batch-max": 100,
		})
		cancel()
		if err != nil {
			return fmt.Errorf("create %s: %w", subID(j), err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
		subs, err := api.ListSubs(ctx, nil)
		cancel()
		owned := 0
		for _, s := range subs {
			if s.CurrentActiveServer != "" {
				owned++
			}
		}
		if err == nil && owned == c.Subs {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 60s, %d of %d subscriptions have an owner (%v)", owned, c.Subs, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// retentionBound states what bounds the events stored at this rate: the
// bytes per event stored (hookswitch_event_log_bytes / records) at the end
// times the events of 72h (the default retention), capped by the default
// retention-bytes (2 GiB) of stored events.
func retentionBound(res result) string {
	var per float64
	if n := len(res.Samples); n > 0 {
		var b, r int64
		for _, s := range res.Samples[n-1] {
			b += s.LogBytes
			r += s.Records
		}
		if r > 0 {
			per = float64(b) / float64(r)
		}
	}
	if per == 0 {
		return "no events stored"
	}
	const retention, retentionBytes = 72 * 3600, 2 << 30
	full := per * res.EventsPerNode * retention
	if full > retentionBytes {
		return fmt.Sprintf("%.0f B/event × %.0f events/s per node × 72h = %s > retention-bytes 2 GiB: events.db grows for %s, then stays at about 2 GiB",
			per, res.EventsPerNode, mib(int64(full)), (time.Duration(retentionBytes/(per*res.EventsPerNode)) * time.Second).Round(time.Minute))
	}
	return fmt.Sprintf("%.0f B/event × %.0f events/s per node × 72h = %s (under retention-bytes 2 GiB)", per, res.EventsPerNode, mib(int64(full)))
}

// summary prints the outcome for a person.
func summary(w io.Writer, res result) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "load: %d events accepted at %.0f/s (offered %d, skipped %d, failed requests %d)\n",
		res.Load.Accepted, res.Load.Rate, res.Load.Offered, res.Load.Skipped, res.Load.Errors)
	fmt.Fprintf(w, "receiver: %d POSTs, %d refused (500/503), %d hung\n", res.Receiver.Posts, res.Receiver.Refused, res.Receiver.Hung)
	fmt.Fprintf(w, "accounting: %s\n", res.Account)
	if res.DrainSeconds >= 0 {
		fmt.Fprintf(w, "backlog delivered %.0fs after the load stopped\n", res.DrainSeconds)
	} else {
		fmt.Fprintf(w, "backlog NOT delivered within -drain %s\n", res.Config.Drain)
	}
	fmt.Fprintf(w, "series (load-phase samples after a %s warm-up):\n", res.Config.Warmup)
	for _, v := range res.Verdicts {
		fmt.Fprintln(w, "  "+v.String())
	}
	fmt.Fprintf(w, "events.db bound: %s\n", res.RetentionBound)
	if res.OK {
		fmt.Fprintln(w, "OK: 0 lost, every judged series within its bound")
		return
	}
	fmt.Fprintln(w, "FAILED:")
	for _, f := range res.Failures {
		fmt.Fprintln(w, "  "+f)
	}
}
