package node

import (
	"context"
	"slices"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/engine"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/fsm"
)

// The leader counts the events waiting for a down home node at most every
// lagCountIntervals report intervals, reading at most lagScanMax records
// per count over all waiting subscriptions and logs. A count resumes where
// the previous one stopped, so a backlog larger than lagScanMax is counted
// over several rounds (lag grows to the exact number meanwhile, never
// above it), and a big backlog never stalls the leader: at the default
// report interval that is at most about 7,000 records read per second.
const (
	lagCountIntervals = 3
	lagScanMax        = 20000
	lagReadChunk      = 1024
)

// logs returns the event logs this node holds by source node: its own
// and its copies of the peers' logs (what the engine reads).
func (p *pipeline) logs() map[string]engine.Log {
	out := map[string]engine.Log{p.n.id: p.events}
	p.mesh.mu.Lock()
	defer p.mesh.mu.Unlock()
	for id, mr := range p.mesh.mirrors {
		out[id] = mr
	}
	return out
}

// planWaiting returns the SetWaiting verdicts the state asks for: every geo
// "no" subscription whose home node cannot send it (fsm.HomeDown) is
// waiting, with the lag counted for it in lags when there is one. Only
// verdicts that change something are returned, in id order.
//
// judged holds, by node, the report sequence number the leader's last
// health verdict was based on. A home node that has reported since is
// passed over: it is coming back (its health verdict comes next round),
// and its report has just set the subscription's status, which a waiting
// verdict must not overwrite.
func planWaiting(st *fsm.State, lags map[string]uint64, judged map[string]uint64) []fsm.Waiting {
	var out []fsm.Waiting
	for _, s := range st.SortedSubs() {
		down, reason := fsm.HomeDown(st, s)
		if !down {
			continue
		}
		seq := fsm.HomeSeq(st, s)
		if _, member := st.Nodes[s.HomeNode]; member && seq != judged[s.HomeNode] {
			continue
		}
		w := fsm.Waiting{Sub: s.ID, Generation: s.Generation, HomeSeq: seq, Reason: reason}
		if lag, ok := lags[s.ID]; ok {
			w.Lag = &lag
		}
		if fsm.WaitingChanges(s, &w) {
			out = append(out, w)
		}
	}
	return out
}

// waitingSubs returns copies of the subscriptions waiting for their home
// node, whose lag the leader counts.
func waitingSubs(st *fsm.State) []*fsm.Subscription {
	var out []*fsm.Subscription
	for _, s := range st.SortedSubs() {
		if down, _ := fsm.HomeDown(st, s); down {
			out = append(out, s.Clone())
		}
	}
	return out
}

// lagCounter counts, for the subscriptions waiting for their home node,
// the events of this node's logs after their committed cursors that they
// match. It is the leader's alone (not safe for concurrent use) and keeps
// its progress between rounds.
type lagCounter struct {
	logs func() map[string]engine.Log
	subs map[string]*lagCount
	next time.Time // when the next count is due
}

// lagCount is one subscription's count, valid for the generation, version
// (filters) and start time it was made with.
type lagCount struct {
	generation, version uint64
	startMs             int64
	srcs                map[string]*lagSource
}

// lagSource is one subscription's count in one log: count events matched
// in [from, next).
type lagSource struct {
	inc        string
	cursor     fsm.Cursor // the committed cursor it started from
	from, next uint64
	count      uint64
}

func newLagCounter(logs func() map[string]engine.Log) *lagCounter {
	return &lagCounter{logs: logs, subs: map[string]*lagCount{}}
}

// due reports whether a count is due at now, and if so schedules the next
// one every after.
func (lc *lagCounter) due(now time.Time, every time.Duration) bool {
	if now.Before(lc.next) {
		return false
	}
	lc.next = now.Add(every)
	return true
}

// count returns the lag of each of subs, reading at most budget records in
// all, and forgets the subscriptions not in subs.
func (lc *lagCounter) count(subs []*fsm.Subscription, budget int) map[string]uint64 {
	keep := make(map[string]bool, len(subs))
	for _, s := range subs {
		keep[s.ID] = true
	}
	for id := range lc.subs {
		if !keep[id] {
			delete(lc.subs, id)
		}
	}
	if len(subs) == 0 {
		return nil
	}
	logs := lc.logs()
	nodes := make([]string, 0, len(logs))
	for id := range logs {
		nodes = append(nodes, id)
	}
	slices.Sort(nodes)
	out := make(map[string]uint64, len(subs))
	for _, s := range subs {
		c := lc.subs[s.ID]
		if c == nil || c.generation != s.Generation || c.version != s.Version || c.startMs != s.StartMs {
			c = &lagCount{generation: s.Generation, version: s.Version, startMs: s.StartMs, srcs: map[string]*lagSource{}}
			lc.subs[s.ID] = c
		}
		ix := match.NewIndex()
		if err := ix.Upsert(matchSub(s)); err != nil {
			continue // it cannot match anything: no count
		}
		var total uint64
		for _, node := range nodes {
			total += c.source(s, node, logs[node], ix, &budget)
		}
		out[s.ID] = total
	}
	return out
}

// source brings s's count in one log forward, within budget, and returns
// it.
func (c *lagCount) source(s *fsm.Subscription, node string, l engine.Log, ix *match.Index, budget *int) uint64 {
	inc := l.Incarnation()
	cur, hasCur := s.Cursors[node]
	hasCur = hasCur && cur.Incarnation == inc
	src := c.srcs[node]
	if src == nil || src.inc != inc || (hasCur && src.cursor != cur) {
		src = &lagSource{inc: inc, cursor: cur}
		if hasCur {
			src.from = cur.Seq + 1
		} else {
			seq, err := l.SeqAtOrAfter(time.UnixMilli(s.StartMs))
			if err != nil {
				return 0 // closed or failing: try again next round
			}
			src.from = seq
		}
		src.next = src.from
		c.srcs[node] = src
	}
	if first := l.FirstSeq(); src.from < first {
		// Retention dropped the start (dropped-count has those): count
		// what is left from the beginning.
		src.from, src.next, src.count = first, first, 0
	}
	var hits []match.Hit
	for *budget > 0 && src.next <= l.LastSeq() {
		recs, err := l.Read(src.next, min(*budget, lagReadChunk))
		if err != nil || len(recs) == 0 {
			break
		}
		if recs[0].Seq != src.next {
			// Trimmed under the read: start again next round.
			delete(c.srcs, node)
			return src.count
		}
		for i := range recs {
			r := &recs[i]
			ev := &dispatch.Event{ID: dispatch.EventID(inc, r.Seq), Node: node, Seq: r.Seq,
				IngestMs: r.IngestMs, Model: r.Model, Body: r.Body}
			if hits = ix.Match(ev, hits[:0]); len(hits) > 0 {
				src.count++
			}
		}
		src.next = recs[len(recs)-1].Seq + 1
		*budget -= len(recs)
	}
	return src.count
}

// markWaiting is the reconciler's waiting round: it counts the waiting
// events when a count is due and commits the verdicts that change
// something.
func (r *reconciler) markWaiting(ctx context.Context, now time.Time) error {
	var lags map[string]uint64
	if r.lags.due(now, lagCountIntervals*r.n.cfg.ReportInterval) {
		var subs []*fsm.Subscription
		r.n.fsm.Read(func(st *fsm.State) { subs = waitingSubs(st) })
		lags = r.lags.count(subs, lagScanMax) // outside the state lock: it reads logs
	}
	var verdicts []fsm.Waiting
	home := map[string]string{} // of the subscriptions that start waiting now
	r.n.fsm.Read(func(st *fsm.State) {
		verdicts = planWaiting(st, lags, r.lastSeq)
		for _, v := range verdicts {
			if s := st.Subs[v.Sub]; s.Status != fsm.StatusWaiting {
				home[v.Sub] = s.HomeNode
			}
		}
	})
	for len(verdicts) > 0 {
		n := min(len(verdicts), maxMovesPerEntry)
		if err := r.n.applySkippable(ctx, &fsm.SetWaiting{Subs: verdicts[:n], AtMs: now.UnixMilli()}); err != nil {
			return err
		}
		for _, v := range verdicts[:n] {
			if h, ok := home[v.Sub]; ok {
				r.n.log.Info("subscription waiting for its home node", "sub", v.Sub, "home", h)
			}
		}
		verdicts = verdicts[n:]
	}
	return nil
}
