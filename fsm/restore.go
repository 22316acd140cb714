package fsm

import "sort"

// RestoreState replaces the subscriptions and API tokens with those of a
// snapshot file (`hookswitch snapshot restore`), atomically, in one entry.
//
// What it keeps of the running state, and why:
//   - Node tokens (role node) stay and the file's node tokens are dropped:
//     they authenticate the nodes that run now, not those that saved.
//   - Membership stays. Nodes, when set (only by a node that bootstraps a
//     new cluster from a file, before anyone joined), adds the file's
//     members with what their old reports said cleared, so that nodes
//     that come back under the same ids keep their cursors and
//     subscriptions.
//   - A subscription keeps its owner only when that node is a member
//     (otherwise the leader assigns it). Of its cursors (see
//     restoredCursors) those of the file's source nodes that are members
//     stay, unless the running subscription of the same id is at another
//     incarnation of that node's log: then the running cursor stays.
//   - Every restored subscription's generation is bumped above both the
//     file's and the running one's, so a report from before the restore
//     cannot move its cursors, and its sending node restarts it from the
//     restored ones.
type RestoreState struct {
	Subs   []Subscription `json:"subs"`
	Tokens []Token        `json:"tokens"`
	Nodes  []Node         `json:"nodes,omitempty"`
	AtMs   int64          `json:"at-ms"`
}

// Type implements Command.
func (RestoreState) Type() CommandType { return CmdRestoreState }

func applyRestoreState(st *State, idx uint64, c *RestoreState) (Result, []Change) {
	var changes []Change
	for i := range c.Nodes {
		n := c.Nodes[i]
		if _, ok := st.Nodes[n.ID]; ok || n.ID == "" {
			continue // a member now: what it says of itself wins
		}
		n.LastReportSeq, n.LastReportMs, n.Health, n.UpSinceMs = 0, 0, "", 0
		st.Nodes[n.ID] = &n
		changes = append(changes, record(BucketNodes, n.ID, &n))
	}

	// Subscriptions: the file's, in id order, then deletions of the rest.
	subs := make(map[string]*Subscription, len(c.Subs))
	for i := range c.Subs {
		in := &c.Subs[i]
		if in.ID == "" {
			continue
		}
		sub := in.Clone()
		gen := sub.Generation
		if old, ok := st.Subs[sub.ID]; ok && old.Generation > gen {
			gen = old.Generation
		}
		sub.Generation = gen + 1
		sub.Version = idx
		sub.UpdatedMs = c.AtMs
		if _, ok := st.Nodes[sub.Owner]; !ok {
			sub.Owner = ""
		}
		sub.Cursors = restoredCursors(st, sub.Cursors, st.Subs[sub.ID])
		if sub.Status == "" {
			sub.Status = StatusPending
		}
		subs[sub.ID] = sub
	}
	for _, id := range sortedKeys(st.Subs) {
		if _, ok := subs[id]; !ok {
			changes = append(changes, Change{Bucket: BucketSubs, Key: id})
		}
	}
	for _, id := range sortedKeys(subs) {
		changes = append(changes, subChange(subs[id]))
	}
	st.Subs = subs

	// Tokens: the running node tokens, then the file's others.
	tokens := map[string]*Token{}
	byHash := map[string]string{}
	for id, t := range st.Tokens {
		if t.Role == RoleNode {
			tokens[id], byHash[t.Hash] = t, id
		}
	}
	for i := range c.Tokens {
		t := c.Tokens[i]
		if t.ID == "" || t.Hash == "" || t.Role == RoleNode {
			continue
		}
		if _, taken := tokens[t.ID]; taken {
			continue
		}
		if _, taken := byHash[t.Hash]; taken {
			continue
		}
		tokens[t.ID], byHash[t.Hash] = &t, t.ID
	}
	for _, id := range sortedKeys(st.Tokens) {
		if _, ok := tokens[id]; !ok {
			changes = append(changes, Change{Bucket: BucketTokens, Key: id})
		}
	}
	for _, id := range sortedKeys(tokens) {
		if st.Tokens[id] == tokens[id] {
			continue // a node token that stays as it is
		}
		changes = append(changes, record(BucketTokens, id, tokens[id]))
	}
	st.Tokens, st.tokenByHash = tokens, byHash
	return Result{}, changes
}

// restoredCursors are a restored subscription's cursors: the file's for
// source nodes that are members, where the running subscription of the same
// id (running, may be nil) has no cursor of another incarnation; for the
// other members, the running cursor. A file cursor of a log incarnation the
// node no longer has is ignored by delivery, which then starts at the
// subscription's start time; keeping the running cursor instead spares a
// cluster restored over itself from delivering its whole log again.
func restoredCursors(st *State, file map[string]Cursor, running *Subscription) map[string]Cursor {
	out := map[string]Cursor{}
	for node, cu := range file {
		if _, ok := st.Nodes[node]; ok {
			out[node] = cu
		}
	}
	if running != nil {
		for node, cu := range running.Cursors {
			if f, ok := out[node]; !ok || f.Incarnation != cu.Incarnation {
				out[node] = cu
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
