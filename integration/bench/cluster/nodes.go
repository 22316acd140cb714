package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// timingSet is one set of the cluster's timing settings.
type timingSet struct {
	Name      string   `json:"name"`
	Flags     []string `json:"flags"`
	DownAfter string   `json:"down-after"`
	timings   harness.Timings
	extra     []string
}

// designDefaults are DESIGN.md's default timings (report 1s, lease 3s,
// down-after 5s, stable-after 60s, raft heartbeat and election 1s).
var designDefaults = harness.Timings{
	Report: time.Second, Lease: 3 * time.Second, DownAfter: 5 * time.Second, StableAfter: 60 * time.Second,
	RaftHeartbeat: time.Second, RaftElection: time.Second,
}

// shortTimings are the mesh tests' short timings.
var shortTimings = harness.Timings{
	Report: 100 * time.Millisecond, Lease: 400 * time.Millisecond, DownAfter: 800 * time.Millisecond, StableAfter: time.Second,
	RaftHeartbeat: 200 * time.Millisecond, RaftElection: 200 * time.Millisecond,
}

var timingSets = map[string]timingSet{
	"default": newTimingSet("default", designDefaults),
	"short":   newTimingSet("short", shortTimings, "--trim-interval", "200ms"),
}

func newTimingSet(name string, tm harness.Timings, extra ...string) timingSet {
	return timingSet{Name: name, Flags: append(tm.Flags(), extra...), DownAfter: tm.DownAfter.String(), timings: tm, extra: extra}
}

// cluster is three agents (n1 bootstrapped, n2 and n3 joined) or one dev
// agent, started through the integration harness. A harness failure
// (a node that does not start) ends the bench after stopping the nodes.
type cluster struct {
	tb     *harness.Main
	timing timingSet
	nodes  []*harness.Node
	root   string
}

func (c *cluster) node(id string) *harness.Node {
	for _, p := range c.nodes {
		if p.ID == id {
			return p
		}
	}
	return nil
}

func (c *cluster) api(p *harness.Node) *client.Client { return p.API() }

// stop stops every node (together) and removes their data unless kept.
func (c *cluster) stop() { c.tb.Close() }

// startCluster starts n nodes: n == 1 is `agent --dev`.
func startCluster(n int, ts timingSet, keep bool) *cluster {
	tb := harness.MainTB()
	tb.Keep = keep
	c := &cluster{tb: tb, timing: ts}
	if n == 1 {
		nd := harness.StartDev(tb, append([]string{"--config", "/dev/null", "--node-id", "n1"}, ts.Flags...)...)
		c.nodes, c.root = []*harness.Node{nd}, nd.RootToken()
		return c
	}
	hc := harness.StartCluster(tb, harness.Options{Nodes: n, Timings: ts.timings, Extra: ts.extra, NoWaitStable: true})
	c.nodes, c.root = hc.Nodes, hc.Root
	return c
}

// restart starts a stopped node again on its data dir, joining the others.
func (c *cluster) restart(p *harness.Node) error {
	p.Restart()
	return nil
}

// waitUp waits until every running node sees every node up with a leader.
func (c *cluster) waitUp(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, why := true, ""
		for _, p := range c.nodes {
			if !p.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).Cluster(ctx)
			cancel()
			if err != nil {
				ok, why = false, p.ID+": "+err.Error()
				break
			}
			up := 0
			for _, nd := range v.Nodes {
				if nd.Health == "up" {
					up++
				}
			}
			if v.Leader == "" || up != len(c.nodes) {
				ok, why = false, fmt.Sprintf("%s sees leader %q and %d of %d up", p.ID, v.Leader, up, len(c.nodes))
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("cluster not up: " + why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader is the leader's id as the first running node sees it.
func (c *cluster) leader() string {
	for _, p := range c.nodes {
		if p.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).Cluster(ctx)
			cancel()
			if err == nil {
				return v.Leader
			}
		}
	}
	return ""
}

// owner polls the subscription through a running node until ok accepts
// its current-active-server.
func (c *cluster) owner(sub string, ok func(string) bool, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, p := range c.nodes {
			if !p.Running() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			v, err := c.api(p).GetSub(ctx, sub)
			cancel()
			if err == nil && v.CurrentActiveServer != "" && ok(v.CurrentActiveServer) {
				return v.CurrentActiveServer, nil
			}
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("subscription %s: no suitable owner after %s", sub, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
