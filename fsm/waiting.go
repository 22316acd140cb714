package fsm

import "fmt"

// SetWaiting commits the leader's verdicts on geo "no" subscriptions whose
// home node cannot send them (down, not a member, a witness): their status
// becomes waiting and, when the leader counted it, their lag the number of
// events waiting for the home node. The home node's own reports set status
// and lag again once it is back (NodeReport). It is advisory state, so the
// leader proposes it skippable (EncodeSkippable).
type SetWaiting struct {
	Subs []Waiting `json:"subs"`
	AtMs int64     `json:"at-ms"`
}

// Waiting is one verdict of SetWaiting. It applies only while the state
// still agrees: same generation, the home node still cannot send
// (HomeDown), and no report of the home node committed since the verdict
// was made (HomeSeq), so a verdict raced by the home node's return is
// dropped instead of overwriting the status its report just set.
type Waiting struct {
	Sub        string `json:"sub"`
	Generation uint64 `json:"generation"`
	// HomeSeq is the home node's LastReportSeq the verdict was made on
	// (0 when it is not a member).
	HomeSeq uint64 `json:"home-seq"`
	// Lag, when set, is the events counted as waiting.
	Lag *uint64 `json:"lag,omitempty"`
	// Reason, when set, becomes the last error (with AtMs as its time):
	// why nobody can send it.
	Reason string `json:"reason,omitempty"`
}

// PinnedHome is the home node of a geo "no" subscription with spec: its
// preferred server, else the node that created it (origin), else (created
// before origins were recorded) where it is now (current).
func PinnedHome(spec *SubSpec, origin, current string) string {
	switch {
	case spec.PreferredServer != "":
		return spec.PreferredServer
	case origin != "":
		return origin
	}
	return current
}

// HomeDown reports whether sub waits for its home node: it is geo "no",
// pinned there (owner and home agree; otherwise a move is pending), not
// paused or suspended, and its home node is down, not a member, or a
// witness. A member that has never reported is not judged yet (as in the
// leader's health verdicts): a node that just joined does not make its
// subscriptions waiting for the moment before its first report. reason
// says why when no recovery of the node can end the wait by itself (it is
// not a member, or it is a witness); it is empty for a node that is down.
func HomeDown(st *State, sub *Subscription) (down bool, reason string) {
	if sub.GeoSupport != GeoNo || sub.Owner != sub.HomeNode || sub.Paused || sub.Status == StatusSuspended {
		return false, ""
	}
	nd, ok := st.Nodes[sub.HomeNode]
	switch {
	case !ok:
		return true, fmt.Sprintf("waiting: its home node %q is not a member of the cluster", sub.HomeNode)
	case nd.Witness:
		return true, fmt.Sprintf("waiting: its home node %q is a witness, which never sends", sub.HomeNode)
	}
	return nd.Health == HealthDown, ""
}

// settledStatus is the status of a subscription that no longer waits,
// until its sending node reports: what its counters say (pending when it
// never posted, error when its last attempt failed, else active).
func settledStatus(c *Counters) string {
	switch {
	case c.LastPostMs == 0 && c.LastErrorMs == 0:
		return StatusPending
	case c.LastErrorMs > c.LastPostMs:
		return StatusError
	}
	return StatusActive
}

// HomeSeq is the LastReportSeq of sub's home node (0 if not a member).
func HomeSeq(st *State, sub *Subscription) uint64 {
	if nd, ok := st.Nodes[sub.HomeNode]; ok {
		return nd.LastReportSeq
	}
	return 0
}

// WaitingChanges reports whether verdict w would change sub (status, lag
// or last error). The leader proposes only verdicts that do.
func WaitingChanges(sub *Subscription, w *Waiting) bool {
	return sub.Status != StatusWaiting ||
		(w.Lag != nil && *w.Lag != sub.Counters.Lag) ||
		(w.Reason != "" && w.Reason != sub.Counters.LastError)
}

func applySetWaiting(st *State, c *SetWaiting) (Result, []Change) {
	var changes []Change
	for i := range c.Subs {
		w := &c.Subs[i]
		cur, ok := st.Subs[w.Sub]
		if !ok || cur.Generation != w.Generation || HomeSeq(st, cur) != w.HomeSeq {
			continue
		}
		if down, _ := HomeDown(st, cur); !down || !WaitingChanges(cur, w) {
			continue
		}
		sub := cur.Clone()
		sub.Status = StatusWaiting
		if w.Lag != nil {
			sub.Counters.Lag = *w.Lag
		}
		if w.Reason != "" && w.Reason != sub.Counters.LastError {
			sub.Counters.LastError, sub.Counters.LastErrorMs = w.Reason, c.AtMs
		}
		st.Subs[sub.ID] = sub
		changes = append(changes, subChange(sub))
	}
	return Result{}, changes
}
