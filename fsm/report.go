package fsm

// NodeReport is a node's periodic report (every report-interval): its
// heartbeat, and for the subscriptions it sends their counter deltas,
// status and cursors. Seq numbers the node's reports: a report whose Seq is
// not above the last applied one is a retry and is ignored, so deltas are
// counted once.
type NodeReport struct {
	Node string      `json:"node"`
	Seq  uint64      `json:"seq"`
	AtMs int64       `json:"at-ms"`
	Subs []SubReport `json:"subs,omitempty"`
}

// SubReport is one subscription's part of a NodeReport. Counter fields are
// deltas since the node's previous report, except Lag, which is absolute.
// Cursors and status are taken only from the subscription's current owner
// and only for the Generation it was sent under (a report from before a
// rewind or a reassignment cannot move cursors back or forth).
type SubReport struct {
	ID         string   `json:"id"`
	Generation uint64   `json:"generation"`
	Cursors    []Cursor `json:"cursors,omitempty"`
	Status     string   `json:"status,omitempty"`

	Posts   uint64 `json:"posts,omitempty"`
	Errors  uint64 `json:"errors,omitempty"`
	Events  uint64 `json:"events,omitempty"`
	Dropped uint64 `json:"dropped,omitempty"`
	Lag     uint64 `json:"lag"`

	LastPostMs     int64  `json:"last-post-ms,omitempty"`
	LastError      string `json:"last-error,omitempty"`
	LastErrorMs    int64  `json:"last-error-ms,omitempty"`
	FailingSinceMs int64  `json:"failing-since-ms,omitempty"`
}

// RewindSub moves a subscription's delivery back to the first events at or
// after FromMs in every source log (replay). It bumps the generation so
// reports of the old position are ignored, and the sending node restarts
// the subscription from StartMs.
type RewindSub struct {
	ID     string `json:"id"`
	FromMs int64  `json:"from-ms"`
	AtMs   int64  `json:"at-ms"`
}

func applyNodeReport(st *State, c *NodeReport) (Result, []Change) {
	nd, ok := st.Nodes[c.Node]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if c.Seq <= nd.LastReportSeq {
		return Result{}, nil // a retried report: already counted
	}
	n := *nd
	n.LastReportSeq, n.LastReportMs = c.Seq, c.AtMs
	st.Nodes[n.ID] = &n
	changes := []Change{record(BucketNodes, n.ID, &n)}
	for i := range c.Subs {
		r := &c.Subs[i]
		cur, ok := st.Subs[r.ID]
		if !ok {
			continue // deleted since
		}
		sub := cur.Clone()
		cn := &sub.Counters
		cn.Posts += r.Posts
		cn.Errors += r.Errors
		cn.Events += r.Events
		cn.Dropped += r.Dropped
		if sub.Owner == c.Node && sub.Generation == r.Generation {
			cn.Lag = r.Lag
			if cn.LastPostMs < r.LastPostMs {
				cn.LastPostMs = r.LastPostMs
			}
			if r.LastErrorMs > cn.LastErrorMs {
				cn.LastError, cn.LastErrorMs = r.LastError, r.LastErrorMs
			}
			sub.FailingSinceMs = r.FailingSinceMs
			if r.Status != "" {
				sub.Status = r.Status
			}
			if len(r.Cursors) > 0 && sub.Cursors == nil {
				sub.Cursors = map[string]Cursor{}
			}
			for _, cu := range r.Cursors {
				sub.Cursors[cu.Node] = cu
			}
		}
		st.Subs[sub.ID] = sub
		changes = append(changes, subChange(sub))
	}
	return Result{}, changes
}

func applyRewindSub(st *State, c *RewindSub) (Result, []Change) {
	cur, ok := st.Subs[c.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	sub := cur.Clone()
	sub.Cursors = nil
	sub.StartMs = c.FromMs
	sub.Generation++
	sub.UpdatedMs = c.AtMs
	st.Subs[sub.ID] = sub
	return Result{Sub: sub.Clone()}, []Change{subChange(sub)}
}
