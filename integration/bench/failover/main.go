// Command failover measures how long a subscription stays without a sender
// when the node that sends it dies: it starts a real three-node cluster of
// `hookswitch agent` processes on loopback TCP, creates a subscription,
// kills its owner with SIGKILL, and measures the time from the kill to the
// reassignment being committed (seen by polling GET /v1/subscriptions/{id}
// on a survivor every 20 ms until current-active-server changes). It then
// restarts the killed node on its data dir, waits until it is up again,
// and repeats.
//
//	go run ./integration/bench/failover -runs 10 -timings default
//	go run ./integration/bench/failover -runs 10 -timings short
//	go run ./integration/bench/failover -runs 10 -timings both
//
// default: the product defaults (report 1s, lease 3s, down-after 5s,
// stable-after 60s, raft heartbeat and election 1s). short: report 100ms,
// lease 400ms, down-after 800ms, stable-after 1s, raft 200ms. The result
// is printed as JSON on stdout; progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// pollEvery is how often the survivor is asked for the owner.
const pollEvery = 20 * time.Millisecond

// keep is -keep: do not remove the data dirs and logs.
var keep bool

// timings is one set of the cluster's timing settings.
type timings struct {
	Name           string `json:"timings"`
	ReportInterval string `json:"report-interval"`
	Lease          string `json:"lease"`
	DownAfter      string `json:"down-after"`
	StableAfter    string `json:"stable-after"`
	RaftHeartbeat  string `json:"raft-heartbeat-timeout"`
	RaftElection   string `json:"raft-election-timeout"`
	tm             harness.Timings
}

var timingSets = map[string]timings{
	// The defaults of DESIGN.md.
	"default": newTimings("default", harness.Timings{Report: time.Second, Lease: 3 * time.Second, DownAfter: 5 * time.Second,
		StableAfter: 60 * time.Second, RaftHeartbeat: time.Second, RaftElection: time.Second}),
	"short": newTimings("short", harness.Timings{Report: 100 * time.Millisecond, Lease: 400 * time.Millisecond,
		DownAfter: 800 * time.Millisecond, StableAfter: time.Second,
		RaftHeartbeat: 200 * time.Millisecond, RaftElection: 200 * time.Millisecond}),
}

func newTimings(name string, tm harness.Timings) timings {
	return timings{Name: name, ReportInterval: tm.Report.String(), Lease: tm.Lease.String(), DownAfter: tm.DownAfter.String(),
		StableAfter: tm.StableAfter.String(), RaftHeartbeat: tm.RaftHeartbeat.String(), RaftElection: tm.RaftElection.String(), tm: tm}
}

// run is one kill and its measured reassignment.
type run struct {
	Run            int     `json:"run"`
	Sub            string  `json:"sub"`
	Killed         string  `json:"killed"`
	KilledWasLead  bool    `json:"killed-was-leader"`
	LeaderAfter    string  `json:"leader-after"`
	NewOwner       string  `json:"new-owner"`
	KillToReassign float64 `json:"kill-to-reassign-ms"`
	KilledAt       string  `json:"killed-at"` // UTC, to find the run in the logs
	// Elections counts the leaderships gained (by any node, the same one
	// included) between the kill and the reassignment: a new leader gives
	// every node a full down-after again, so each one delays failover.
	Elections int `json:"elections-meanwhile"`
}

// result is one timing set's measurements.
type result struct {
	timings
	Runs int `json:"runs"`
	// LoadBefore and LoadAfter are /proc/loadavg around the runs: the
	// machine's load explains outliers (a starved leader steps down, and
	// a new leader waits a full down-after before it marks a node down).
	LoadBefore string  `json:"loadavg-before"`
	LoadAfter  string  `json:"loadavg-after"`
	MedianMs   float64 `json:"median-ms"`
	MaxMs      float64 `json:"max-ms"`
	MinMs      float64 `json:"min-ms"`
	Each       []run   `json:"each"`
}

func main() {
	runs := flag.Int("runs", 10, "kills per timing set")
	which := flag.String("timings", "both", "default, short or both")
	bin := flag.String("bin", "", "hookswitch binary (default: build it)")
	owner := flag.String("owner", "follower", "whose death is measured: follower (the owner is not the raft leader) or any")
	flag.BoolVar(&keep, "keep", false, "keep the nodes' data dirs and logs (where is printed on stderr)")
	flag.Parse()
	if err := mainErr(*runs, *which, *bin, *owner); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

func mainErr(runs int, which, bin, owner string) (err error) {
	var sets []timings
	switch which {
	case "default", "short":
		sets = []timings{timingSets[which]}
	case "both":
		sets = []timings{timingSets["default"], timingSets["short"]}
	default:
		return fmt.Errorf("-timings %q: want default, short or both", which)
	}
	if owner != "follower" && owner != "any" {
		return fmt.Errorf("-owner %q: want follower or any", owner)
	}
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	// The nodes run through the integration harness, which builds
	// hookswitch once (unless -bin).
	if bin != "" {
		harness.UseBinary(bin)
	} else {
		logf("building %s", harness.ModulePath)
		defer harness.RemoveBinary()
	}
	harness.Binary(harness.MainTB())
	out := struct {
		Command string   `json:"command"`
		Results []result `json:"results"`
	}{Command: "go run ./integration/bench/failover " + strings.Join(os.Args[1:], " ")}
	for _, ts := range sets {
		r, err := measure(ts, runs, owner == "follower")
		if err != nil {
			return fmt.Errorf("%s timings: %w", ts.Name, err)
		}
		out.Results = append(out.Results, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
}

// ---- the cluster ----

// cluster is three agents started through the integration harness: n1
// bootstrapped, n2 and n3 joined.
type cluster struct {
	*harness.Cluster
	ts timings
}

// view reads GET /v1/cluster from a running node.
func (cl *cluster) view() (httpapi.ClusterView, error) { return cl.View() }

// waitAllUp waits until the cluster has all three nodes up and a leader.
func (cl *cluster) waitAllUp(timeout time.Duration) error {
	return poll(timeout, func() error {
		v, err := cl.view()
		if err != nil {
			return err
		}
		up := 0
		for _, n := range v.Nodes {
			if n.Health == "up" {
				up++
			}
		}
		if v.Leader == "" || up != len(cl.Nodes) || len(v.Nodes) != len(cl.Nodes) {
			return fmt.Errorf("not all up yet: leader %q, %d of %d up", v.Leader, up, len(cl.Nodes))
		}
		return nil
	})
}

func (cl *cluster) node(id string) *harness.Node {
	for _, p := range cl.Nodes {
		if p.ID == id {
			return p
		}
	}
	return nil
}

// poll calls f every pollEvery until it returns nil or the timeout passes.
func poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s: %w", timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// ---- the measurement ----

func measure(ts timings, runs int, followerOnly bool) (res result, err error) {
	logf("%s timings: starting a 3-node cluster", ts.Name)
	tb := harness.MainTB()
	tb.Keep = keep
	defer tb.Close()
	defer func() {
		if err != nil {
			tb.Keep = true // the nodes' data and logs, for a look
		}
	}()
	cl := &cluster{Cluster: harness.StartCluster(tb, harness.Options{Nodes: 3, Timings: ts.tm, NoWaitStable: true}), ts: ts}
	res.timings, res.Runs, res.LoadBefore = ts, runs, loadavg()
	defer func() { res.LoadAfter = loadavg() }()
	for i := range runs {
		r, err := once(cl, i, followerOnly)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		logf("%s run %d: killed %s (leader: %v); %s took %s over after %.0f ms; leader now %s; elections meanwhile: %d",
			ts.Name, i+1, r.Killed, r.KilledWasLead, r.NewOwner, r.Sub, r.KillToReassign, r.LeaderAfter, r.Elections)
		res.Each = append(res.Each, r)
	}
	ms := make([]float64, len(res.Each))
	for i, r := range res.Each {
		ms[i] = r.KillToReassign
	}
	slices.Sort(ms)
	res.MinMs, res.MaxMs = ms[0], ms[len(ms)-1]
	if n := len(ms); n%2 == 1 {
		res.MedianMs = ms[n/2]
	} else {
		res.MedianMs = (ms[n/2-1] + ms[n/2]) / 2
	}
	return res, nil
}

// once creates a subscription, kills its owner and measures the time until
// a survivor is its committed owner; then deletes the subscription (so
// every node is back to no subscriptions, and the next one is placed by the
// rendezvous hash alone) and restarts the killed node.
func once(cl *cluster, i int, followerOnly bool) (run, error) {
	r := run{Run: i + 1}
	if err := cl.waitAllUp(60 * time.Second); err != nil {
		return r, err
	}
	v, err := cl.view()
	if err != nil {
		return r, err
	}
	leader := cl.node(v.Leader)
	// With no other subscription, the new one goes to the node its id
	// hashes highest with: a few ids give one owned by a follower when
	// that is asked for.
	var owner *harness.Node
	for try := 0; try < 20 && owner == nil; try++ {
		id := fmt.Sprintf("failover-%d-%d", i+1, try)
		if err := call(func(ctx context.Context) error {
			_, err := leader.API().CreateSub(ctx, client.Fields{"id": id, "model": "call", "post-url": "http://127.0.0.1:9/unused/" + id})
			return err
		}); err != nil {
			return r, fmt.Errorf("create subscription: %w", err)
		}
		var o string
		err = poll(10*time.Second, func() error {
			return call(func(ctx context.Context) error {
				s, err := leader.API().GetSub(ctx, id)
				if err == nil && s.CurrentActiveServer == "" {
					err = errors.New("not assigned yet")
				}
				o = s.CurrentActiveServer
				return err
			})
		})
		if err != nil {
			return r, fmt.Errorf("assignment of %s: %w", id, err)
		}
		if !followerOnly || o != leader.ID {
			owner, r.Sub = cl.node(o), id
			break
		}
		if err := call(func(ctx context.Context) error { return leader.API().DeleteSub(ctx, id) }); err != nil {
			return r, fmt.Errorf("delete %s: %w", id, err)
		}
	}
	if owner == nil {
		return r, errors.New("no new subscription went to a follower in 20 tries")
	}
	r.Killed, r.KilledWasLead = owner.ID, owner.ID == leader.ID
	// Poll a survivor: the leader when it survives.
	watcher := leader
	if watcher == owner {
		for _, p := range cl.Nodes {
			if p != owner {
				watcher = p
				break
			}
		}
	}
	c := watcher.API()
	elections := cl.elections()
	killed := time.Now()
	owner.Kill()
	var newOwner string
	var seen time.Time
	err = poll(cl.ts.tm.DownAfter+60*time.Second, func() error {
		return call(func(ctx context.Context) error {
			s, err := c.GetSub(ctx, r.Sub)
			if err != nil {
				return err
			}
			if s.CurrentActiveServer == owner.ID || s.CurrentActiveServer == "" {
				return fmt.Errorf("still on %q", s.CurrentActiveServer)
			}
			newOwner, seen = s.CurrentActiveServer, time.Now()
			return nil
		})
	})
	if err != nil {
		return r, fmt.Errorf("reassignment after killing %s: %w", owner.ID, err)
	}
	r.KillToReassign = float64(seen.Sub(killed).Microseconds()) / 1000
	r.KilledAt = killed.UTC().Format("15:04:05.000")
	r.Elections = cl.elections() - elections
	r.NewOwner = newOwner
	if v, err := cl.view(); err == nil {
		r.LeaderAfter = v.Leader
	}
	if err := call(func(ctx context.Context) error { return c.DeleteSub(ctx, r.Sub) }); err != nil {
		return r, fmt.Errorf("delete %s: %w", r.Sub, err)
	}
	// Back to three nodes for the next run.
	owner.Restart()
	return r, nil
}

// elections counts the "gained leadership" lines in the nodes' logs.
func (cl *cluster) elections() int {
	n := 0
	for _, p := range cl.Nodes {
		n += strings.Count(p.Logs(), `msg="gained leadership"`)
	}
	return n
}

// call runs one API call with a timeout.
func call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f(ctx)
}

// loadavg is the first line of /proc/loadavg ("" where there is none).
func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
