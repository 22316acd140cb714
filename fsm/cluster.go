package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"sort"
)

// SetHealth records the leader's verdict on a node: up (since AtMs) or
// down. Only the leader's reconciler proposes it, with the leader's clock.
type SetHealth struct {
	Node string `json:"node"`
	Up   bool   `json:"up"`
	AtMs int64  `json:"at-ms"`
}

// SetDraining marks a node draining (its subscriptions move off and none
// move to it) or not.
type SetDraining struct {
	Node     string `json:"node"`
	Draining bool   `json:"draining"`
}

// RemoveNode forgets a node and its node token.
type RemoveNode struct {
	Node string `json:"node"`
}

// Move is one reassignment: compare-and-set on the subscription's
// generation, so a decision made on an old state is refused.
type Move struct {
	Sub        string `json:"sub"`
	Generation uint64 `json:"generation"`
	Owner      string `json:"owner"`
}

// Reassign commits the leader's reassignment decisions. Each move applies
// only if the subscription's generation is still the one it was decided on;
// an applied move bumps the generation (so reports of the old owner no
// longer move cursors).
type Reassign struct {
	Moves []Move `json:"moves"`
	AtMs  int64  `json:"at-ms"`
}

func applySetHealth(st *State, c *SetHealth) (Result, []Change) {
	cur, ok := st.Nodes[c.Node]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	n := *cur
	switch {
	case c.Up && n.Health != HealthUp:
		n.Health, n.UpSinceMs = HealthUp, c.AtMs
	case !c.Up:
		n.Health, n.UpSinceMs = HealthDown, 0
	default:
		return Result{}, nil
	}
	st.Nodes[n.ID] = &n
	return Result{}, []Change{record(BucketNodes, n.ID, &n)}
}

func applySetDraining(st *State, c *SetDraining) (Result, []Change) {
	cur, ok := st.Nodes[c.Node]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	n := *cur
	n.Draining = c.Draining
	st.Nodes[n.ID] = &n
	return Result{}, []Change{record(BucketNodes, n.ID, &n)}
}

func applyRemoveNode(st *State, c *RemoveNode) (Result, []Change) {
	if _, ok := st.Nodes[c.Node]; !ok {
		return Result{Err: ErrNotFound}, nil
	}
	delete(st.Nodes, c.Node)
	changes := []Change{{Bucket: BucketNodes, Key: c.Node}}
	id := NodeTokenID(c.Node)
	if t, ok := st.Tokens[id]; ok {
		delete(st.Tokens, id)
		delete(st.tokenByHash, t.Hash)
		changes = append(changes, Change{Bucket: BucketTokens, Key: id})
	}
	return Result{}, changes
}

func applyReassign(st *State, c *Reassign) (Result, []Change) {
	var changes []Change
	moved := 0
	for _, m := range c.Moves {
		cur, ok := st.Subs[m.Sub]
		if !ok || cur.Generation != m.Generation {
			continue
		}
		sub := cur.Clone()
		sub.Owner = m.Owner
		sub.Generation++
		sub.UpdatedMs = c.AtMs
		st.Subs[sub.ID] = sub
		changes = append(changes, subChange(sub))
		moved++
	}
	if moved == 0 && len(c.Moves) > 0 {
		return Result{Err: ErrConflict}, nil
	}
	return Result{}, changes
}

// Candidate is what the assignment rule knows of a node.
type Candidate struct {
	ID       string
	Up       bool
	Stable   bool
	Draining bool
	Witness  bool
}

func (c Candidate) eligible() bool { return !c.Draining && !c.Witness }

// Assign is the assignment rule of DESIGN.md for a geo "yes" subscription:
//  1. its preferred server, if that node is stable and not draining;
//  2. else its current owner, if up and not draining;
//  3. else among stable, non-draining, non-witness nodes the one with the
//     fewest active subscriptions, ties broken by rendezvous hashing of
//     (subscription id, node id);
//  4. if no node is stable, the same among up nodes.
//
// It returns "" when no node can send it. active counts the subscriptions
// each node sends now (without this one).
func Assign(subID, preferred, current string, nodes []Candidate, active map[string]int) string {
	byID := make(map[string]Candidate, len(nodes))
	for _, n := range nodes {
		byID[n.ID] = n
	}
	if p, ok := byID[preferred]; ok && p.Stable && p.eligible() {
		return p.ID
	}
	if c, ok := byID[current]; ok && c.Up && c.eligible() {
		return c.ID
	}
	if id := leastLoaded(subID, nodes, active, func(c Candidate) bool { return c.Stable }); id != "" {
		return id
	}
	return leastLoaded(subID, nodes, active, func(c Candidate) bool { return c.Up })
}

func leastLoaded(subID string, nodes []Candidate, active map[string]int, ok func(Candidate) bool) string {
	best, bestLoad := "", 0
	var bestHash uint64
	for _, n := range nodes {
		if !ok(n) || !n.eligible() {
			continue
		}
		load, h := active[n.ID], RendezvousHash(subID, n.ID)
		if best == "" || load < bestLoad || (load == bestLoad && (h > bestHash || (h == bestHash && n.ID < best))) {
			best, bestLoad, bestHash = n.ID, load, h
		}
	}
	return best
}

// RendezvousHash is the tie-break weight of node for subscription sub:
// every node computes the same order, so the next owner is predictable.
func RendezvousHash(sub, node string) uint64 {
	h := sha256.Sum256([]byte(sub + "\x00" + node))
	return binary.BigEndian.Uint64(h[:8])
}

// SortedNodes returns the nodes ordered by id.
func (s *State) SortedNodes() []*Node {
	out := make([]*Node, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
