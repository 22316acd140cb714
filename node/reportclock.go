package node

import (
	"context"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
)

// reportClock records, on every node, when this node applied each node's
// latest report. A new leader's reconciler starts from it, so a node that
// stopped reporting before the election is not given a full down-after
// again from the election on (which would delay the failover of a dead
// leader's subscriptions by the election time).
type reportClock struct {
	mu   sync.Mutex
	seen map[string]reportSeen
}

type reportSeen struct {
	seq uint64
	at  time.Time
}

func newReportClock() *reportClock { return &reportClock{seen: map[string]reportSeen{}} }

func (c *reportClock) run(ctx context.Context, f *fsm.FSM) {
	for {
		changed := f.Changed()
		now := time.Now()
		f.Read(func(st *fsm.State) {
			c.mu.Lock()
			defer c.mu.Unlock()
			for id, nd := range st.Nodes {
				if s, ok := c.seen[id]; !ok || s.seq != nd.LastReportSeq {
					c.seen[id] = reportSeen{seq: nd.LastReportSeq, at: now}
				}
			}
		})
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// get returns when the node's report with sequence number seq was applied
// here, if it was.
func (c *reportClock) get(id string, seq uint64) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.seen[id]
	if !ok || s.seq != seq {
		return time.Time{}, false
	}
	return s.at, true
}
