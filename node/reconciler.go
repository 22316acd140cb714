package node

import (
	"context"
	"time"

	"github.com/hookswitch/hookswitch/fsm"
)

// maxMovesPerEntry bounds the moves of one Reassign entry.
const maxMovesPerEntry = 500

// reconciler is the leader's loop: it decides node health from committed
// reports (with this leader's clock) and commits reassignments by the
// assignment rule, and removes expired subscriptions. It runs only while
// this node leads, after a Barrier.
type reconciler struct {
	n *Node
	// lastSeq and seenAt: the last report sequence number of each node
	// and when this leader saw it change.
	lastSeq map[string]uint64
	seenAt  map[string]time.Time
	// lags counts the events waiting for down home nodes.
	lags *lagCounter
}

func newReconciler(n *Node) *reconciler {
	return &reconciler{n: n, lastSeq: map[string]uint64{}, seenAt: map[string]time.Time{}, lags: newLagCounter(n.logs)}
}

// tick is how often the reconciler looks: twice per report interval, so a
// node is marked down at most half an interval after down-after.
func (r *reconciler) tick() time.Duration { return r.n.cfg.ReportInterval / 2 }

func (r *reconciler) run(ctx context.Context) {
	t := time.NewTicker(r.tick())
	defer t.Stop()
	for {
		// Taken before the step, so that what the step itself commits
		// (a health verdict, after which the assignment is decided on the
		// next round) wakes the loop at once instead of at the next tick.
		changed := r.n.fsm.Changed()
		if err := r.step(ctx, time.Now()); err != nil && ctx.Err() == nil {
			r.n.log.Warn("reconciler step failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// judge decides each node's health at now from its committed reports, and
// returns the verdicts to commit and the candidates for assignment. A node
// is down when this leader has not seen a new report of it for down-after.
// A node this leader has not judged before (every node, right after an
// election) is given a whole down-after from now: when its last report
// was committed does not count, because the election itself (and a busy
// machine's slow commits around it) held reports back, and judging by it
// would mark every node down at once, the new leader included, and move
// subscriptions off healthy owners.
func (r *reconciler) judge(st *fsm.State, now time.Time) ([]*fsm.SetHealth, []fsm.Candidate) {
	var health []*fsm.SetHealth
	var nodes []fsm.Candidate
	nowMs := now.UnixMilli()
	cfg := r.n.cfg
	for _, nd := range st.SortedNodes() {
		seen, known := r.seenAt[nd.ID]
		newReport := known && nd.LastReportSeq != r.lastSeq[nd.ID]
		if !known || newReport {
			r.lastSeq[nd.ID], r.seenAt[nd.ID] = nd.LastReportSeq, now
			seen = now
		}
		reported := nd.LastReportSeq != 0
		up := reported && now.Sub(seen) < cfg.DownAfter
		switch {
		case up && nd.Health != fsm.HealthUp && (newReport || nd.Health == ""):
			// Up on its first report, and up again on its next one.
			health = append(health, &fsm.SetHealth{Node: nd.ID, Up: true, AtMs: nowMs})
		case !up && reported && nd.Health != fsm.HealthDown:
			health = append(health, &fsm.SetHealth{Node: nd.ID, Up: false, AtMs: nowMs})
		}
		isUp := nd.Health == fsm.HealthUp && up
		nodes = append(nodes, fsm.Candidate{
			ID: nd.ID, Up: isUp, Draining: nd.Draining, Witness: nd.Witness,
			Stable: isUp && nowMs-nd.UpSinceMs >= cfg.StableAfter.Milliseconds(),
		})
	}
	return health, nodes
}

// step runs one round: health first, then assignment, then the waiting
// status of pinned subscriptions whose home node is down, then expiry.
func (r *reconciler) step(ctx context.Context, now time.Time) error {
	var health []*fsm.SetHealth
	var moves []fsm.Move
	var expired []string
	r.n.fsm.Read(func(st *fsm.State) {
		var nodes []fsm.Candidate
		health, nodes = r.judge(st, now)
		moves, expired = plan(st, nodes, now.UnixMilli())
	})
	nowMs := now.UnixMilli()
	for _, c := range health {
		if err := r.n.applyChecked(ctx, c); err != nil {
			return err
		}
		verdict := fsm.HealthDown
		if c.Up {
			verdict = fsm.HealthUp
		}
		r.n.log.Info("node health changed", "of", c.Node, "health", verdict)
		r.n.metrics.healthChanged(c.Up)
	}
	if len(health) > 0 {
		// Assignment is decided on the state with the new health.
		return nil
	}
	for len(moves) > 0 {
		n := min(len(moves), maxMovesPerEntry)
		res, err := r.n.Apply(ctx, &fsm.Reassign{Moves: moves[:n], AtMs: nowMs})
		if err != nil {
			return err
		}
		if res.Err == nil {
			r.n.log.Info("reassigned subscriptions", "moves", n)
			r.n.metrics.reassigned(n)
		}
		moves = moves[n:]
	}
	if err := r.markWaiting(ctx, now); err != nil {
		return err
	}
	for _, id := range expired {
		if err := r.n.applyChecked(ctx, &fsm.DeleteSub{ID: id}); err != nil {
			return err
		}
		r.n.log.Info("removed an expired subscription", "sub", id)
	}
	return nil
}

// plan returns the reassignments the assignment rule asks for, and the
// expired subscriptions.
func plan(st *fsm.State, nodes []fsm.Candidate, nowMs int64) ([]fsm.Move, []string) {
	active := map[string]int{}
	for _, s := range st.Subs {
		if !s.Paused {
			active[s.Owner]++
		}
	}
	subs := st.SortedSubs()
	var moves []fsm.Move
	var expired []string
	for _, s := range subs {
		if s.ExpiresMs != 0 && s.ExpiresMs <= nowMs {
			expired = append(expired, s.ID)
			continue
		}
		want := s.HomeNode // geo "no": pinned to its home node
		if s.GeoSupport != "no" {
			if !s.Paused {
				active[s.Owner]--
			}
			want = fsm.Assign(s.ID, s.PreferredServer, s.Owner, nodes, active)
			if want == "" {
				want = s.Owner // nobody can send it: leave it where it is
			}
			if !s.Paused {
				active[want]++
			}
		}
		if want != s.Owner {
			moves = append(moves, fsm.Move{Sub: s.ID, Generation: s.Generation, Owner: want})
		}
	}
	return moves, expired
}
