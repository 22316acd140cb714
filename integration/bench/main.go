// Command bench is hookswitch's end-to-end benchmark harness: it measures
// what a PBX would see (ingest acknowledgement latency) and what a webhook
// receiver would see (delivered events per second, end-to-end latency,
// duplicates, losses) through a real node, against a baseline of the same
// traffic posted straight to the receiver.
//
// Usage, from anywhere inside the repository:
//
//	go run ./integration/bench [flags]
//
// What a run does:
//
//  1. Pre-encodes the events (bounded by -events-max, and by -rate ×
//     -duration when paced) into request bodies of -batch events: a JSON
//     array, or one object when -batch is 1. Each event is about 200 bytes:
//     {"model":"call","domain":"d00042.bench.test","user":"u1",
//     "bench-seq":<n>,"bench-ts":<unix ns>,"orig_callid":...,
//     "term_callid":...,"orig_from_uri":...}. bench-ts is written into the
//     pre-encoded bytes just before each request is sent.
//  2. Starts a node: builds the binary (`go build -o $TMP/hookswitch .` in
//     the repository root, found by walking up to go.mod; -hookswitch-bin
//     skips the build), runs `hookswitch agent --dev --data-dir $TMP/data
//     --http-addr 127.0.0.1:P --raft-addr 127.0.0.1:Q` as a child process in
//     its own process group, waits for GET /readyz 200 and reads the root
//     token from $TMP/data/root-token. The node is stopped (SIGTERM, then
//     SIGKILL) when the bench ends, also on Ctrl-C; if it dies, the tail of
//     its stderr is printed. -node-addr uses a running node instead
//     (-token or HOOKSWITCH_TOKEN for the admin API); -dry-run uses an
//     in-process fake node that "delivers" straight to the receiver, to
//     check the harness itself.
//  3. Starts the webhook receiver (in-process, 127.0.0.1:0) and creates
//     -subs subscriptions (model call, batch-max -sub-batch-max), each
//     posting to its own URL on the receiver. Their domains come from a
//     pool of round(1/-matching-fraction) domains (subscription i on
//     domain i mod pool) and each event's domain is drawn uniformly from
//     the pool, so an event matches about that fraction of the
//     subscriptions (exactly subs/pool of them when the pool divides subs).
//  4. Warm-up: one probe event per domain; waits until every subscription
//     has received its probe (-warmup-timeout), so subscription start-up
//     is not measured. Probes are not counted.
//  5. Load: -concurrency senders POST the batches to /v1/events, paced by
//     an absolute schedule (batch k at start + k×batch/rate; -rate 0 = as
//     fast as possible), until all are sent or -duration is over.
//  6. Drain: polls the receiver until every expected delivery arrived, or
//     the counts stop growing for -drain-quiet, or -drain-max passes.
//  7. Stops the node (or deletes the subscriptions of a -node-addr node),
//     then replays the same pre-encoded batches that were accepted, with
//     the same rate and concurrency, straight to the receiver ("raw"
//     baseline: hookswitch's cost is the difference).
//  8. Prints one JSON object on stdout (progress goes to stderr) and,
//     with -json-out, writes it to a file too.
//
// The receiver parses each POST (a JSON array or one object), checks
// X-Correlation-ID against the subscription the URL belongs to and the
// webhook-* headers, deduplicates by (subscription, event-id), counts
// deliveries per subscription and per event, records receive time minus
// bench-ts, and flags deliveries to a subscription the event does not
// match ("misrouted") and event-ids that differ from those the ingest
// request was answered with.
//
// Examples:
//
//	go run ./integration/bench                                 # 1 sub, batches of 100, as fast as possible, 10s
//	go run ./integration/bench -subs 10000 -matching-fraction 0.01
//	go run ./integration/bench -rate 1000 -batch 1             # latency at a fixed, moderate rate
//	go run ./integration/bench -mode ingest-only -rate 2000 -batch 1
//	go run ./integration/bench -dry-run -dry-run-dup 0.01 -dry-run-drop 0.001   # check the harness
//	go run ./integration/bench -node-addr 127.0.0.1:7480 -token $(cat hookswitch-data/root-token)
//
// Output keys (all latencies in milliseconds; rates in events per second):
//
//	ok, error, mode, target, stopped_by ("events-max", "duration", "interrupted", "error")
//	delivered_events_per_s   unique deliveries (summed over subscriptions) / (first send → last unique receive)
//	e2e_latency_ms           bench-ts → receive, over unique deliveries {count,samples,p50,p90,p99,p999,max,mean}
//	ingest_ack_ms            request sent → 2xx answer read, per ingest request
//	accepted                 events acknowledged by the node
//	expected_deliveries      Σ over accepted events of the subscriptions each matches
//	delivered_unique, duplicates
//	undelivered              Σ over accepted events of max(0, expected − unique deliveries of it)
//	raw_events_per_s         the same accepted batches posted straight to the receiver
//	ratio_delivered_to_raw   delivered_events_per_s / raw_events_per_s (with fan-out, deliveries
//	                         are compared with raw events: read it with delivery.matching_subs_per_event)
//	clean                    nothing lost, duplicated, misrouted or mislabelled
//	cpu                      CPU seconds of the bench and of the node from first send to end of drain
//	ingest, delivery, raw    details (delivery.receiver_handle_ms: the receiver's own time per POST,
//	                         so a slow delivery can be told from a slow receiver); settings, env
//
// The delivery figures are null in ingest-only mode, the raw ones when the
// baseline did not run (-raw=false, nothing accepted, interrupted).
//
// Exit status: 0 when the run completed, 1 when it failed or was
// interrupted (the JSON is still printed), 2 for bad flags, 3 with -strict
// when anything was lost, duplicated, misrouted or mislabelled.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hookswitch/hookswitch/integration/harness"
)

// config is the command line.
type config struct {
	mode           string
	subs           int
	fraction       float64
	batch          int
	rate           float64
	duration       time.Duration
	concurrency    int
	eventsMax      int64
	subBatchMax    int
	jsonOut        string
	nodeAddr       string
	token          string
	cluster        bool
	dryRun         bool
	dryDup         float64
	dryDrop        float64
	bin            string
	nodeArgs       string
	keepTmp        bool
	warmup         bool
	warmupTimeout  time.Duration
	readyTimeout   time.Duration
	drainMax       time.Duration
	drainQuiet     time.Duration
	raw            bool
	reqTimeout     time.Duration
	subParallel    int
	latencySamples int
	seed           uint64
	pretty         bool
	quiet          bool
	strict         bool
}

const (
	modeDeliver    = "deliver"
	modeIngestOnly = "ingest-only"
	// approxEventBytes bounds the memory of pre-encoded events.
	approxEventBytes = 215
	maxPreparedBytes = 6 << 30
)

var quiet atomic.Bool

// logf prints a progress line to stderr.
func logf(format string, args ...any) {
	if quiet.Load() {
		return
	}
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// serverLog routes an http.Server's own errors (accept failures such as
// "too many open files") to the progress output.
func serverLog(who string) *log.Logger {
	return log.New(logWriter(who), "", 0)
}

type logWriter string

func (w logWriter) Write(p []byte) (int, error) {
	logf("%s: %s", string(w), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func parseFlags(args []string) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", modeDeliver, `"deliver" (ingest, match, webhook delivery) or "ingest-only" (no subscriptions: ingest acknowledgement only)`)
	fs.IntVar(&c.subs, "subs", 1, "number of subscriptions (deliver mode)")
	fs.Float64Var(&c.fraction, "matching-fraction", 1, "fraction of the subscriptions each event matches (domain pool of round(1/F))")
	fs.IntVar(&c.batch, "batch", 100, "events per ingest request (1: a single JSON object per request)")
	fs.Float64Var(&c.rate, "rate", 0, "target events/s (0: as fast as possible)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "stop sending after this long")
	fs.IntVar(&c.concurrency, "concurrency", 8, "ingest requests in flight")
	fs.Int64Var(&c.eventsMax, "events-max", 1_000_000, "hard cap on events sent (all are pre-encoded, ~215 bytes each)")
	fs.IntVar(&c.subBatchMax, "sub-batch-max", 100, "batch-max of the subscriptions (1..1000)")
	fs.StringVar(&c.jsonOut, "json-out", "", "also write the result to this file")
	fs.StringVar(&c.nodeAddr, "node-addr", "", "use this running node (host:port or URL) instead of starting one")
	fs.StringVar(&c.token, "token", os.Getenv("HOOKSWITCH_TOKEN"), "admin token for -node-addr (default $HOOKSWITCH_TOKEN)")
	fs.BoolVar(&c.cluster, "cluster", false, "run against a multi-node cluster (not implemented yet)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "use an in-process fake node that delivers directly (checks the harness, not hookswitch)")
	fs.Float64Var(&c.dryDup, "dry-run-dup", 0, "dry run: fraction of webhook batches the fake node sends twice")
	fs.Float64Var(&c.dryDrop, "dry-run-drop", 0, "dry run: fraction of deliveries the fake node loses")
	fs.StringVar(&c.bin, "hookswitch-bin", "", "use this hookswitch binary instead of building one")
	fs.StringVar(&c.nodeArgs, "node-args", "", "extra arguments for `hookswitch agent` (space-separated)")
	fs.BoolVar(&c.keepTmp, "keep-tmp", false, "keep the temporary directory (data dir, node logs)")
	fs.BoolVar(&c.warmup, "warmup", true, "deliver one probe event per domain before measuring")
	fs.DurationVar(&c.warmupTimeout, "warmup-timeout", 30*time.Second, "how long to wait for every subscription's probe")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 30*time.Second, "how long to wait for the node's /readyz")
	fs.DurationVar(&c.drainMax, "drain-max", 30*time.Second, "after sending, wait at most this long for deliveries")
	fs.DurationVar(&c.drainQuiet, "drain-quiet", 5*time.Second, "stop draining when counts have not grown for this long")
	fs.BoolVar(&c.raw, "raw", true, "also run the raw baseline (same batches straight to the receiver)")
	fs.DurationVar(&c.reqTimeout, "request-timeout", 30*time.Second, "timeout of one ingest request")
	fs.IntVar(&c.subParallel, "sub-parallel", 16, "subscription creates in flight")
	fs.IntVar(&c.latencySamples, "latency-samples", 20_000_000, "end-to-end latency samples kept (reservoir beyond)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the event domain choice")
	fs.BoolVar(&c.pretty, "pretty", false, "indent the JSON on stdout")
	fs.BoolVar(&c.quiet, "q", false, "no progress on stderr")
	fs.BoolVar(&c.strict, "strict", false, "exit 3 when deliveries were lost, duplicated, misrouted or mislabelled")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./integration/bench [flags]\n\nEnd-to-end benchmark of a hookswitch node; see the comment at the top of integration/bench/main.go.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return c, c.validate()
}

func (c *config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.cluster {
		bad("-cluster is not implemented yet (single node only for now)")
	}
	switch c.mode {
	case modeDeliver:
		if c.subs < 1 {
			bad("-subs must be at least 1 in deliver mode")
		}
	case modeIngestOnly:
	default:
		bad("-mode must be %q or %q", modeDeliver, modeIngestOnly)
	}
	if !(c.fraction > 0 && c.fraction <= 1) {
		bad("-matching-fraction must be in (0, 1]")
	}
	if c.batch < 1 || c.batch > 10000 {
		bad("-batch must be 1..10000 (the ingest limit)")
	}
	if c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0) {
		bad("-rate must be >= 0")
	}
	if c.duration <= 0 {
		bad("-duration must be > 0")
	}
	if c.concurrency < 1 || c.concurrency > 4096 {
		bad("-concurrency must be 1..4096")
	}
	if c.eventsMax < 1 {
		bad("-events-max must be >= 1")
	} else if c.eventsMax*approxEventBytes > maxPreparedBytes {
		bad("-events-max %d would pre-encode more than %d GiB", c.eventsMax, maxPreparedBytes>>30)
	}
	if c.subBatchMax < 1 || c.subBatchMax > 1000 {
		bad("-sub-batch-max must be 1..1000")
	}
	if c.dryRun && c.nodeAddr != "" {
		bad("-dry-run and -node-addr exclude each other")
	}
	if !c.dryRun && (c.dryDup != 0 || c.dryDrop != 0) {
		bad("-dry-run-dup and -dry-run-drop need -dry-run")
	}
	if c.dryDup < 0 || c.dryDup > 1 || c.dryDrop < 0 || c.dryDrop > 1 {
		bad("-dry-run-dup and -dry-run-drop are fractions in [0, 1]")
	}
	if c.nodeAddr != "" && c.mode == modeDeliver && c.token == "" {
		bad("-node-addr needs -token (or HOOKSWITCH_TOKEN) to create subscriptions")
	}
	if c.subParallel < 1 {
		bad("-sub-parallel must be >= 1")
	}
	if c.drainMax < 0 || c.drainQuiet <= 0 || c.warmupTimeout <= 0 || c.readyTimeout <= 0 || c.reqTimeout <= 0 {
		bad("timeouts must be positive")
	}
	return errors.Join(errs...)
}

// totalEvents is how many events the run pre-encodes.
func (c *config) totalEvents() int64 {
	n := c.eventsMax
	if c.rate > 0 {
		n = min(n, int64(math.Ceil(c.rate*c.duration.Seconds())))
	}
	return max(n, 1)
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	quiet.Store(cfg.quiet)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// After the first signal the default behaviour is back: a second
		// Ctrl-C ends the bench at once (the node dies with it through
		// its parent-death signal).
		stop()
	}()
	res, err := run(ctx, cfg)
	stop()
	if res != nil {
		if werr := emit(res, cfg); werr != nil {
			fmt.Fprintln(os.Stderr, "bench:", werr)
			if err == nil {
				err = werr
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if cfg.strict && !res.Clean {
		fmt.Fprintln(os.Stderr, "bench: -strict: the run was not clean (see delivery counts)")
		os.Exit(3)
	}
}

// emit prints the result on stdout and writes -json-out.
func emit(res *Result, cfg *config) error {
	var out []byte
	var err error
	if cfg.pretty {
		out, err = json.MarshalIndent(res, "", "  ")
	} else {
		out, err = json.Marshal(res)
	}
	if err != nil {
		return err
	}
	os.Stdout.Write(append(out, '\n'))
	if cfg.jsonOut != "" {
		pretty, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.jsonOut, append(pretty, '\n'), 0o644); err != nil {
			return fmt.Errorf("-json-out: %w", err)
		}
	}
	return nil
}

func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil, // never through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// baseURL turns host:port or a URL into a base URL without trailing slash.
func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("bad node address %q", addr)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// isLoopback reports whether a base URL's host is a loopback address.
func isLoopback(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ---- result ----

// Result is the one JSON object a run prints.
type Result struct {
	OK        bool   `json:"ok"`
	Clean     bool   `json:"clean"` // nothing lost, duplicated, misrouted or mislabelled (deliver mode)
	Error     string `json:"error,omitempty"`
	Mode      string `json:"mode"`
	Target    string `json:"target"` // "process", "node-addr" or "dry-run"
	StoppedBy string `json:"stopped_by"`

	// Headline figures; the delivery ones are null in ingest-only mode,
	// the raw ones when the baseline did not run.
	DeliveredPerSec    *float64 `json:"delivered_events_per_s"`
	E2E                *Latency `json:"e2e_latency_ms"`
	IngestAck          Latency  `json:"ingest_ack_ms"`
	Accepted           int64    `json:"accepted"`
	ExpectedDeliveries *int64   `json:"expected_deliveries"`
	DeliveredUnique    *int64   `json:"delivered_unique"`
	Duplicates         *int64   `json:"duplicates"`
	Undelivered        *int64   `json:"undelivered"`
	RawPerSec          *float64 `json:"raw_events_per_s"`
	Ratio              *float64 `json:"ratio_delivered_to_raw"`

	CPU      *CPU            `json:"cpu,omitempty"`
	Ingest   IngestResult    `json:"ingest"`
	Delivery *DeliveryResult `json:"delivery,omitempty"`
	Raw      *RawResult      `json:"raw,omitempty"`
	Settings Settings        `json:"settings"`
	Env      Env             `json:"env"`
}

// IngestResult describes the generator's run against the node.
type IngestResult struct {
	Sent            int64            `json:"sent"`
	Accepted        int64            `json:"accepted"`
	Requests        int64            `json:"requests"`
	Errors          map[string]int64 `json:"errors"`
	FirstError      string           `json:"first_error,omitempty"`
	AcceptedDiffers int64            `json:"accepted_count_differs,omitempty"`
	WindowS         float64          `json:"window_s"` // first send → last acknowledgement
	PerSec          float64          `json:"events_per_s"`
	OfferedPerSec   float64          `json:"offered_events_per_s"` // events handed to senders / sending window
	PacingLag       *Latency         `json:"pacing_lag_ms,omitempty"`
	AckLatency      Latency          `json:"ack_ms"`
	RatioToRaw      float64          `json:"ratio_to_raw,omitempty"`
}

// DeliveryResult describes what the receiver saw.
type DeliveryResult struct {
	Expected          int64    `json:"expected"`
	Unique            int64    `json:"unique"`
	Duplicates        int64    `json:"duplicates"`
	Undelivered       int64    `json:"undelivered"`
	DistinctEvents    int64    `json:"distinct_events"` // events delivered to at least one subscription
	DistinctPerSec    float64  `json:"distinct_events_per_s"`
	PerSec            float64  `json:"events_per_s"`
	WindowS           float64  `json:"window_s"` // first send → last unique receive
	FirstReceiveMs    float64  `json:"first_receive_ms"`
	Posts             int64    `json:"posts"`
	EventsPerPost     float64  `json:"events_per_post"`
	MatchingSubsAvg   float64  `json:"matching_subs_per_event"`
	Misrouted         int64    `json:"misrouted"`           // delivered to a subscription the event does not match
	OverDelivered     int64    `json:"over_delivered"`      // unique deliveries beyond an event's matches
	DeliveredUnacked  int64    `json:"delivered_unacked"`   // deliveries of events whose ingest request failed
	CorrelationErrors int64    `json:"correlation_errors"`  // X-Correlation-ID not the subscription id
	MissingHeaders    int64    `json:"missing_webhook_hdr"` // POSTs without webhook-id/-timestamp/-signature
	MissingEventID    int64    `json:"missing_event_id"`
	IDMismatches      int64    `json:"event_id_mismatches"` // delivered event-id differs from the ingest answer's
	IDsUnknown        int64    `json:"event_ids_unverified"`
	BadBodies         int64    `json:"bad_bodies"`
	Foreign           int64    `json:"foreign_events"` // events without a bench-seq of this run
	PerSub            PerSub   `json:"per_subscription"`
	Drain             Drain    `json:"drain"`
	Warmup            *Warmup  `json:"warmup,omitempty"`
	E2E               *Latency `json:"e2e_latency_ms"`
	ReceiverHandle    *Latency `json:"receiver_handle_ms"` // receiver's own time per POST (headers read → answer)
}

// PerSub summarizes unique deliveries per subscription.
type PerSub struct {
	Min   int64   `json:"min"`
	Max   int64   `json:"max"`
	Mean  float64 `json:"mean"`
	Short int     `json:"short"` // subscriptions that received fewer than they should
	// Counts by subscription id, listed when there are at most 16.
	Counts map[string]int64 `json:"counts,omitempty"`
}

type Drain struct {
	WaitedS float64 `json:"waited_s"`
	Reason  string  `json:"reason"` // complete, quiet, max, interrupted, skipped
}

type Warmup struct {
	WaitedS float64 `json:"waited_s"`
	Ready   int     `json:"ready_subs"`
	Subs    int     `json:"subs"`
}

// RawResult is the baseline run straight to the receiver.
type RawResult struct {
	Events     int64    `json:"events"`
	Received   int64    `json:"received"`
	PerSec     float64  `json:"events_per_s"`
	WindowS    float64  `json:"window_s"`
	E2E        *Latency `json:"e2e_latency_ms"`
	AckLatency Latency  `json:"ack_ms"`
	StoppedBy  string   `json:"stopped_by"`
	Error      string   `json:"error,omitempty"`
}

type Settings struct {
	Subs             int     `json:"subs"`
	MatchingFraction float64 `json:"matching_fraction"`
	Domains          int     `json:"domains"`
	Batch            int     `json:"batch"`
	Rate             float64 `json:"rate"`
	DurationS        float64 `json:"duration_s"`
	Concurrency      int     `json:"concurrency"`
	EventsMax        int64   `json:"events_max"`
	EventsPrepared   int64   `json:"events_prepared"`
	EventBytesAvg    float64 `json:"event_bytes_avg"`
	SubBatchMax      int     `json:"sub_batch_max"`
	Warmup           bool    `json:"warmup"`
	DrainMaxS        float64 `json:"drain_max_s"`
	DrainQuietS      float64 `json:"drain_quiet_s"`
	Seed             uint64  `json:"seed"`
	NodeArgs         string  `json:"node_args,omitempty"`
}

type Env struct {
	GoVersion  string `json:"go_version"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Node       string `json:"node,omitempty"` // base URL of the node
	NodeBinary string `json:"node_version,omitempty"`
	NodeExit   string `json:"node_exit,omitempty"`
	GitCommit  string `json:"git_commit,omitempty"`
	StartedAt  string `json:"started_at"`
}

// ---- the run ----

func run(parent context.Context, cfg *config) (res *Result, err error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	res = &Result{
		Mode:   cfg.mode,
		Target: "process",
		Ingest: IngestResult{Errors: map[string]int64{}},
		Settings: Settings{
			Subs: cfg.subs, MatchingFraction: cfg.fraction, Batch: cfg.batch, Rate: cfg.rate,
			DurationS: cfg.duration.Seconds(), Concurrency: cfg.concurrency, EventsMax: cfg.eventsMax,
			SubBatchMax: cfg.subBatchMax, Warmup: cfg.warmup, DrainMaxS: cfg.drainMax.Seconds(),
			DrainQuietS: cfg.drainQuiet.Seconds(), Seed: cfg.seed, NodeArgs: cfg.nodeArgs,
		},
		Env: Env{
			GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
			OS: runtime.GOOS, Arch: runtime.GOARCH, StartedAt: time.Now().UTC().Format(time.RFC3339),
		},
	}
	deliver := cfg.mode == modeDeliver
	if !deliver {
		res.Settings.Subs = 0
	}
	// fail records the error in the result and returns it.
	fail := func(e error) (*Result, error) {
		if ctx.Err() != nil && context.Cause(ctx) != nil && !errors.Is(e, context.Cause(ctx)) && parent.Err() == nil {
			// The node died: that is the error to report.
			e = fmt.Errorf("%w (%v)", context.Cause(ctx), e)
		}
		res.OK = false
		res.Error = e.Error()
		if res.StoppedBy == "" {
			res.StoppedBy = "error"
		}
		if parent.Err() != nil {
			res.StoppedBy = "interrupted"
		}
		return res, e
	}

	subs := 0
	if deliver {
		subs = cfg.subs
	}
	w := newWorkload(subs, cfg.fraction, cfg.seed)
	res.Settings.Domains = w.domains
	total := cfg.totalEvents()
	prepStart := time.Now()
	batches := prepareBatches(w, total, cfg.batch)
	var bodyBytes int64
	for _, b := range batches {
		bodyBytes += int64(len(b.body))
	}
	res.Settings.EventsPrepared = total
	res.Settings.EventBytesAvg = round3(float64(bodyBytes) / float64(total))
	logf("pre-encoded %d events in %d requests (%.1f MiB) in %s", total, len(batches), float64(bodyBytes)/(1<<20), time.Since(prepStart).Round(time.Millisecond))

	client := &http.Client{Transport: newTransport(cfg.concurrency*2 + cfg.subParallel + 8)}
	defer client.CloseIdleConnections()

	// ---- the node ----
	var (
		base, token string
		node        *harness.Node
		stopNode    func()
		fake        *fakeNode
	)
	switch {
	case cfg.dryRun:
		res.Target = "dry-run"
		if fake, err = startFakeNode(cfg.dryDup, cfg.dryDrop, cfg.seed); err != nil {
			return fail(err)
		}
		defer fake.close()
		base, token = fake.url, fake.token
		logf("dry run: fake node at %s", base)
	case cfg.nodeAddr != "":
		res.Target = "node-addr"
		if base, err = baseURL(cfg.nodeAddr); err != nil {
			return fail(err)
		}
		token = cfg.token
	default:
		// The node runs through the integration harness: built once,
		// started with --dev on free loopback ports, its data and logs in
		// a temporary dir that is kept with -keep-tmp or when the node
		// failed.
		root, err := harness.RepoRoot(".")
		if err != nil {
			return fail(err)
		}
		harness.ReadyTimeout = cfg.readyTimeout
		tb := harness.MainTB()
		tb.Keep = cfg.keepTmp
		defer tb.Close()
		if cfg.bin != "" {
			harness.UseBinary(cfg.bin)
		} else {
			res.Env.GitCommit = gitCommit(root)
			logf("building hookswitch from %s", root)
			defer harness.RemoveBinary()
		}
		t0 := time.Now()
		bin := harness.Binary(tb)
		if cfg.bin == "" {
			logf("built %s in %s", bin, time.Since(t0).Round(time.Millisecond))
		}
		res.Env.NodeBinary = commandOutput(root, bin, "--version")
		var extra []string
		if cfg.nodeArgs != "" {
			extra = strings.Fields(cfg.nodeArgs)
		}
		node = harness.StartDev(tb, extra...)
		logf("node started: pid %d, http %s, raft %s, data %s", node.Pid(), node.HTTPAddr, node.RaftAddr, node.DataDir)
		var stopping atomic.Bool
		go func() {
			select {
			case <-node.Done():
				if !stopping.Load() {
					err := fmt.Errorf("hookswitch node (pid %d) exited unexpectedly: %s", node.Pid(), node.ExitState())
					logf("%v; last lines of its stderr:\n%s", err, node.Tail(40))
					cancel(err)
				}
			case <-ctx.Done():
			}
		}()
		stopNode = func() {
			if stopping.Swap(true) {
				return
			}
			if node.Running() {
				node.Stop()
			}
			res.Env.NodeExit = node.ExitState().String()
		}
		defer stopNode()
		token = node.RootToken()
		base = node.BaseURL()
		logf("node ready at %s", base)
	}
	res.Env.Node = base
	if node == nil {
		if err := checkReady(ctx, client, base); err != nil {
			return fail(err)
		}
	}
	api := &apiClient{base: base, token: token, http: client}
	ingestToken := ""
	if !isLoopback(base) {
		ingestToken = token
	}

	// ---- receiver and subscriptions ----
	var rcv *receiver
	var ids []string
	subsDeleted := false
	var subIDs []string
	if deliver {
		runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
		subIDs = make([]string, cfg.subs)
		for i := range subIDs {
			subIDs[i] = fmt.Sprintf("bench-%s-%05d", runID, i)
		}
		if rcv, err = newReceiver(w, false, subIDs, total, cfg.latencySamples); err != nil {
			return fail(err)
		}
		defer rcv.close()
		specs := make([]subSpec, cfg.subs)
		for i := range specs {
			specs[i] = subSpec{ID: subIDs[i], Model: "call", PostURL: rcv.hookURL(i), Domain: domainName(w.subDomain(i)), BatchMax: cfg.subBatchMax}
		}
		if res.Target == "node-addr" {
			// Deferred after rcv.close so it runs first: subscriptions
			// posting to a closed receiver would retry forever.
			defer func() {
				if !subsDeleted {
					if n, err := deleteSubs(api, subIDs, cfg.subParallel, 60*time.Second); err != nil {
						logf("cleanup: deleted %d subscriptions: %v", n, err)
					}
				}
			}()
		}
		logf("creating %d subscriptions over %d domains (receiver %s)", cfg.subs, w.domains, rcv.url)
		if err := createSubs(ctx, api, specs, cfg.subParallel); err != nil {
			return fail(err)
		}
		ids = make([]string, total)
		if cfg.warmup {
			wu, err := warmup(ctx, client, base, ingestToken, w, rcv, runID, cfg.warmupTimeout)
			if err != nil {
				return fail(err)
			}
			res.Delivery = &DeliveryResult{Warmup: wu}
		}
	}

	// ---- load ----
	logf("sending: %d events, batch %d, rate %s, concurrency %d, duration %s", total, cfg.batch, rateDesc(cfg.rate), cfg.concurrency, cfg.duration)
	nodePid := 0
	if node != nil {
		nodePid = node.Pid()
	}
	cpuStart := markCPU(nodePid)
	stopProgress := progress(rcv, deliver)
	gen := runGenerator(ctx, genConfig{
		url: base + "/v1/events", token: ingestToken, batches: batches, rate: cfg.rate, batchSize: cfg.batch,
		duration: cfg.duration, concurrency: cfg.concurrency, reqTimeout: cfg.reqTimeout, ids: ids,
		maxConsecErrors: 1000,
	}, client)
	stopProgress()
	if gen.StoppedBy == "interrupted" && parent.Err() == nil {
		gen.StoppedBy = "error" // the node died, not a Ctrl-C
	}
	if gen.StoppedBy == "events-max" && cfg.rate > 0 && total < cfg.eventsMax {
		// The count came from rate × duration: the duration is what ended it.
		gen.StoppedBy = "duration"
	}
	res.StoppedBy = gen.StoppedBy
	res.Ingest = ingestResult(gen, cfg)
	res.IngestAck = res.Ingest.AckLatency
	res.Accepted = gen.Accepted
	logf("sent %d events, %d accepted in %.3fs (%.0f ev/s), ack p50 %.3f ms p99 %.3f ms; stopped by %s",
		gen.Sent, gen.Accepted, res.Ingest.WindowS, res.Ingest.PerSec, res.IngestAck.P50, res.IngestAck.P99, gen.StoppedBy)
	var runErr error
	if gen.Err != nil {
		runErr = gen.Err
		if errors.Is(gen.Err, errFatalStatus) && gen.Errors["404"] > 0 {
			runErr = fmt.Errorf("%w\nPOST /v1/events answered 404: this build has no ingest pipeline yet (use -dry-run to check the harness)", gen.Err)
		}
	}

	// ---- drain ----
	if deliver {
		d := res.Delivery
		if d == nil {
			d = &DeliveryResult{}
			res.Delivery = d
		}
		expected := expectedDeliveries(w, batches, gen.AckedBatches)
		switch {
		case ctx.Err() != nil:
			d.Drain = Drain{Reason: "interrupted"}
		case gen.Accepted == 0:
			d.Drain = Drain{Reason: "skipped"}
		default:
			logf("draining: %d of %d expected deliveries so far", rcv.unique.Load(), expected)
			waited, reason := drain(ctx, rcv, expected, cfg.drainMax, cfg.drainQuiet)
			d.Drain = Drain{WaitedS: round3(waited.Seconds()), Reason: reason}
			logf("drain: %s after %s", reason, waited.Round(time.Millisecond))
		}
		// Figures from one consistent moment: later POSTs are answered
		// but not counted.
		rcv.freeze()
		fillDelivery(res, d, w, rcv, gen, batches, ids, expected)
	}

	res.CPU = cpuStart.since()

	// ---- stop the node before the baseline, so it does not compete for CPU ----
	if node != nil {
		stopNode()
	}
	if res.Target == "node-addr" && deliver {
		if n, err := deleteSubs(api, subIDs, cfg.subParallel, 60*time.Second); err != nil {
			logf("deleted %d subscriptions: %v", n, err)
		}
		subsDeleted = true
	}
	if fake != nil {
		fake.close()
	}
	if rcv != nil {
		rcv.close()
	}

	// ---- raw baseline ----
	if cfg.raw && ctx.Err() == nil && gen.Accepted > 0 {
		raw, err := runRaw(ctx, cfg, w, batches, gen.AckedBatches, total)
		if err != nil {
			return fail(err)
		}
		res.Raw = raw
		res.RawPerSec = &raw.PerSec
		if raw.PerSec > 0 {
			if res.DeliveredPerSec != nil {
				ratio := round3(*res.DeliveredPerSec / raw.PerSec)
				res.Ratio = &ratio
			}
			res.Ingest.RatioToRaw = round3(res.Ingest.PerSec / raw.PerSec)
		}
	}
	if parent.Err() != nil {
		return fail(fmt.Errorf("interrupted: %w", context.Cause(parent)))
	}
	if runErr != nil {
		return fail(runErr)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}
	res.OK = true
	if res.Delivery != nil {
		d := res.Delivery
		res.Clean = d.Undelivered == 0 && d.Duplicates == 0 && d.Misrouted == 0 && d.OverDelivered == 0 &&
			d.CorrelationErrors == 0 && d.IDMismatches == 0 && d.MissingEventID == 0 && d.BadBodies == 0 && d.MissingHeaders == 0
	} else {
		res.Clean = len(gen.Errors) == 0
	}
	return res, nil
}

func rateDesc(r float64) string {
	if r == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(r, 'f', -1, 64) + "/s"
}

// commandOutput runs a short command and returns its trimmed output, or ""
// on any error.
func commandOutput(dir string, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = harness.CleanEnv()
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func gitCommit(root string) string {
	c := commandOutput(root, "git", "rev-parse", "--short=12", "HEAD")
	if c == "" {
		return ""
	}
	// --no-optional-locks: never take the index lock of a tree others
	// are working in.
	if st := commandOutput(root, "git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"); st != "" {
		c += "-dirty"
	}
	return c
}

// checkReady asks a node that the bench did not start for /readyz.
func checkReady(ctx context.Context, client *http.Client, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("node %s: %w", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("node %s: GET /readyz answered %d", base, resp.StatusCode)
	}
	return nil
}

// progress prints counts every 2 seconds until the returned func is called.
func progress(rcv *receiver, deliver bool) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if deliver && rcv != nil {
					logf("… delivered %d unique (%d duplicates)", rcv.unique.Load(), rcv.dups.Load())
				}
			}
		}
	}()
	return func() { close(done) }
}

func ingestResult(gen *genResult, cfg *config) IngestResult {
	r := IngestResult{
		Sent: gen.Sent, Accepted: gen.Accepted, Requests: gen.Requests, Errors: gen.Errors,
		FirstError: gen.FirstError, AcceptedDiffers: gen.AcceptedDiff,
		AckLatency: mergeSamplers(gen.Ack),
	}
	if !gen.LastAck.IsZero() {
		win := gen.LastAck.Sub(gen.Start)
		r.WindowS = round3(win.Seconds())
		r.PerSec = rate(gen.Accepted, win)
	}
	if !gen.LastHandoff.IsZero() {
		win := gen.LastHandoff.Sub(gen.Start)
		if cfg.rate > 0 {
			// n batches handed over on schedule span (n-1) intervals.
			win += time.Duration(float64(cfg.batch) / cfg.rate * 1e9)
			lag := mergeSamplers(gen.Lag)
			r.PacingLag = &lag
		} else if !gen.LastAck.IsZero() {
			win = gen.LastAck.Sub(gen.Start)
		}
		r.OfferedPerSec = rate(gen.Sent, win)
	}
	return r
}

// expectedDeliveries is Σ over the events of acknowledged batches of the
// subscriptions each matches.
func expectedDeliveries(w *workload, batches []*batch, acked []bool) int64 {
	var n int64
	for k, b := range batches {
		if !acked[k] {
			continue
		}
		for seq := b.first; seq < b.first+int64(b.n); seq++ {
			n += int64(w.matches(seq))
		}
	}
	return n
}

// drain waits for deliveries after the generator stopped: until every
// expected delivery arrived ("complete"), nothing new arrived for quiet
// ("quiet"), or maxWait passed ("max").
func drain(ctx context.Context, rcv *receiver, expected int64, maxWait, quiet time.Duration) (time.Duration, string) {
	start := time.Now()
	last, lastChange, lastLog := rcv.progress(), start, start
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		if rcv.unique.Load() >= expected {
			// Give a duplicate already in flight a moment to show up.
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
			return time.Since(start), "complete"
		}
		if p := rcv.progress(); p != last {
			last, lastChange = p, now
		}
		if now.Sub(lastLog) >= 2*time.Second {
			lastLog = now
			logf("… drain: %d of %d expected deliveries (%d duplicates)", rcv.unique.Load(), expected, rcv.dups.Load())
		}
		if now.Sub(lastChange) >= quiet {
			return now.Sub(start), "quiet"
		}
		if now.Sub(start) >= maxWait {
			return now.Sub(start), "max"
		}
		select {
		case <-ctx.Done():
			return time.Since(start), "interrupted"
		case <-t.C:
		}
	}
}

// fillDelivery computes the delivery figures after the drain.
func fillDelivery(res *Result, d *DeliveryResult, w *workload, rcv *receiver, gen *genResult, batches []*batch, ids []string, expected int64) {
	d.Expected = expected
	d.Unique = rcv.unique.Load()
	d.Duplicates = rcv.dups.Load()
	for k, b := range batches {
		for seq := b.first; seq < b.first+int64(b.n); seq++ {
			got := int64(rcv.perSeq[seq].Load())
			if got > 0 {
				d.DistinctEvents++
			}
			if !gen.AckedBatches[k] {
				d.DeliveredUnacked += got
				continue
			}
			want := int64(w.matches(seq))
			if got < want {
				d.Undelivered += want - got
			} else {
				d.OverDelivered += got - want
			}
		}
	}
	if last := rcv.lastRecv.Load(); last > 0 {
		win := time.Unix(0, last).Sub(gen.Start)
		d.WindowS = round3(win.Seconds())
		d.PerSec = rate(d.Unique, win)
		d.DistinctPerSec = rate(d.DistinctEvents, win)
	}
	if first := rcv.firstRecv.Load(); first > 0 {
		d.FirstReceiveMs = ms(time.Unix(0, first).Sub(gen.Start).Nanoseconds())
	}
	d.Posts = rcv.posts.Load()
	if d.Posts > 0 {
		d.EventsPerPost = round3(float64(rcv.events.Load()-rcv.probes.Load()) / float64(d.Posts))
	}
	if gen.Accepted > 0 {
		d.MatchingSubsAvg = round3(float64(expected) / float64(gen.Accepted))
	}
	d.Misrouted = rcv.misrouted.Load()
	d.CorrelationErrors = rcv.corrErrs.Load()
	d.MissingHeaders = rcv.missingHeader.Load()
	d.MissingEventID = rcv.missingID.Load()
	d.BadBodies = rcv.badBodies.Load()
	d.Foreign = rcv.foreign.Load()
	d.IDMismatches, d.IDsUnknown = rcv.verifyIDs(ids)
	lat := rcv.latency()
	d.E2E = &lat
	ht := rcv.handleTime()
	d.ReceiverHandle = &ht

	// Per subscription: what each received against what it should have.
	perDomain := make([]int64, w.domains)
	for k, b := range batches {
		if !gen.AckedBatches[k] {
			continue
		}
		for seq := b.first; seq < b.first+int64(b.n); seq++ {
			perDomain[w.eventDomain(seq)]++
		}
	}
	d.PerSub.Min = math.MaxInt64
	var sum int64
	for i := range rcv.perSub {
		got := rcv.perSub[i].Load()
		sum += got
		d.PerSub.Min = min(d.PerSub.Min, got)
		d.PerSub.Max = max(d.PerSub.Max, got)
		if got < perDomain[w.subDomain(i)] {
			d.PerSub.Short++
		}
	}
	if n := len(rcv.perSub); n > 0 && n <= 16 && len(rcv.subIDs) == n {
		d.PerSub.Counts = make(map[string]int64, n)
		for i, id := range rcv.subIDs {
			d.PerSub.Counts[id] = rcv.perSub[i].Load()
		}
	}
	if len(rcv.perSub) > 0 {
		d.PerSub.Mean = round3(float64(sum) / float64(len(rcv.perSub)))
	} else {
		d.PerSub.Min = 0
	}

	res.DeliveredPerSec = &d.PerSec
	res.E2E = d.E2E
	res.ExpectedDeliveries = &d.Expected
	res.DeliveredUnique = &d.Unique
	res.Duplicates = &d.Duplicates
	res.Undelivered = &d.Undelivered
}

// warmup ingests one probe event per domain and waits until every
// subscription has received its probe.
func warmup(ctx context.Context, client *http.Client, base, token string, w *workload, rcv *receiver, runID string, timeout time.Duration) (*Warmup, error) {
	start := time.Now()
	logf("warm-up: one probe event per domain (%d), waiting for all %d subscriptions", w.domains, len(rcv.subIDs))
	for first := 0; first < w.domains; first += 1000 {
		var b []byte
		b = append(b, '[')
		for d := first; d < min(first+1000, w.domains); d++ {
			if d > first {
				b = append(b, ',')
			}
			b = fmt.Appendf(b, `{"model":"call","domain":%q,"user":"u1","bench-probe":%q}`, domainName(d), runID)
		}
		b = append(b, ']')
		var buf strings.Builder
		status, err := postRaw(ctx, client, base+"/v1/events", token, b, &buf)
		if err != nil {
			return nil, fmt.Errorf("warm-up ingest: %w", err)
		}
		if status/100 != 2 {
			msg := fmt.Sprintf("warm-up ingest: POST /v1/events answered %d: %s", status, truncate(buf.String(), 300))
			if status == http.StatusNotFound {
				msg += "\nthis build has no ingest pipeline yet (use -dry-run to check the harness)"
			}
			return nil, errors.New(msg)
		}
	}
	wu := &Warmup{Subs: len(rcv.subIDs)}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	lastLog := time.Now()
	for {
		wu.Ready = rcv.probedSubs()
		wu.WaitedS = round3(time.Since(start).Seconds())
		if wu.Ready == wu.Subs {
			logf("warm-up done in %s", time.Since(start).Round(time.Millisecond))
			return wu, nil
		}
		if time.Since(start) > timeout {
			logf("warm-up: only %d of %d subscriptions received their probe within %s; measuring anyway", wu.Ready, wu.Subs, timeout)
			return wu, nil
		}
		if time.Since(lastLog) > 2*time.Second {
			lastLog = time.Now()
			logf("warm-up: %d of %d subscriptions ready", wu.Ready, wu.Subs)
		}
		select {
		case <-ctx.Done():
			return wu, context.Cause(ctx)
		case <-t.C:
		}
	}
}

// postRaw posts one body and returns the status, the answer in out.
func postRaw(ctx context.Context, client *http.Client, url, token string, body []byte, out *strings.Builder) (int, error) {
	cfg := genConfig{url: url, token: token, reqTimeout: 30 * time.Second}
	var buf bytes.Buffer
	status, _, err := postBatch(ctx, client, cfg, &batch{body: body}, &buf)
	out.WriteString(buf.String())
	return status, err
}

// runRaw replays the acknowledged batches straight to a fresh receiver.
func runRaw(ctx context.Context, cfg *config, w *workload, batches []*batch, acked []bool, total int64) (*RawResult, error) {
	var replay []*batch
	var n int64
	for k, b := range batches {
		if acked[k] {
			replay = append(replay, b)
			n += int64(b.n)
		}
	}
	rcv, err := newReceiver(w, true, nil, total, cfg.latencySamples)
	if err != nil {
		return nil, err
	}
	defer rcv.close()
	client := &http.Client{Transport: newTransport(cfg.concurrency*2 + 8)}
	defer client.CloseIdleConnections()
	logf("raw baseline: %d events straight to the receiver", n)
	gen := runGenerator(ctx, genConfig{
		url: rcv.url + "/raw", batches: replay, rate: cfg.rate, batchSize: cfg.batch,
		// The same schedule as the measured run; the slack only matters
		// if the receiver alone is slower than hookswitch was.
		duration: 2*cfg.duration + 30*time.Second, concurrency: cfg.concurrency, reqTimeout: cfg.reqTimeout,
		maxConsecErrors: 100,
	}, client)
	r := &RawResult{Events: n, Received: rcv.unique.Load(), StoppedBy: gen.StoppedBy, AckLatency: mergeSamplers(gen.Ack)}
	if gen.Err != nil {
		r.Error = gen.Err.Error()
	}
	if last := rcv.lastRecv.Load(); last > 0 {
		win := time.Unix(0, last).Sub(gen.Start)
		r.WindowS = round3(win.Seconds())
		r.PerSec = rate(r.Received, win)
	}
	lat := rcv.latency()
	r.E2E = &lat
	logf("raw baseline: %d events in %.3fs (%.0f ev/s), e2e p50 %.3f ms p99 %.3f ms", r.Received, r.WindowS, r.PerSec, lat.P50, lat.P99)
	return r, nil
}
