package fsm

import (
	"encoding/json"
	"fmt"
)

// Buckets of the persisted state. Each record is the JSON of one object.
const (
	BucketSubs   = "subs"
	BucketTokens = "tokens"
	BucketNodes  = "nodes"
)

// Change is one record written (or, with a nil Value, deleted) by an apply.
type Change struct {
	Bucket string
	Key    string
	Value  []byte
}

// Result is what applying a command returns to its proposer.
type Result struct {
	Err   error
	Sub   *Subscription
	Token *Token
}

// Apply applies one decoded command at raft index idx to st and returns the
// result and the records that changed. It is deterministic: the same state,
// index and command always give the same outcome.
func Apply(st *State, idx uint64, c Command) (Result, []Change) {
	switch c := c.(type) {
	case *CreateSub:
		return applyCreateSub(st, idx, c)
	case *UpdateSub:
		return applyUpdateSub(st, idx, c)
	case *DeleteSub:
		return applyDeleteSub(st, c)
	case *SetPaused:
		return applySetPaused(st, c)
	case *CreateToken:
		return applyCreateToken(st, c)
	case *RevokeToken:
		return applyRevokeToken(st, c)
	case *RegisterNode:
		return applyRegisterNode(st, c)
	case *NodeReport:
		return applyNodeReport(st, c)
	case *RewindSub:
		return applyRewindSub(st, c)
	case *SetHealth:
		return applySetHealth(st, c)
	case *SetDraining:
		return applySetDraining(st, c)
	case *RemoveNode:
		return applyRemoveNode(st, c)
	case *Reassign:
		return applyReassign(st, c)
	case *SetWaiting:
		return applySetWaiting(st, c)
	case *RestoreState:
		return applyRestoreState(st, idx, c)
	}
	// Decode only produces the types above; reaching here is a programming
	// error, not bad input.
	panic(fmt.Sprintf("fsm: apply: unhandled command %T", c))
}

func applyCreateSub(st *State, idx uint64, c *CreateSub) (Result, []Change) {
	if _, ok := st.Subs[c.Sub.ID]; ok {
		return Result{Err: ErrExists}, nil
	}
	if c.Unique {
		if dup := st.sameParameters(&c.Sub.SubSpec); dup != nil {
			// The existing one comes back so the proposer can name it.
			return Result{Err: ErrDuplicate, Sub: dup.Clone()}, nil
		}
	}
	if c.MaxPerCreator > 0 && c.Sub.CreatedBy != "" && st.CountCreatedBy(c.Sub.CreatedBy) >= c.MaxPerCreator {
		return Result{Err: ErrLimit}, nil
	}
	sub := c.Sub.Clone()
	sub.Version = idx
	sub.Generation = 1
	if sub.Status == "" {
		sub.Status = StatusPending
	}
	st.Subs[sub.ID] = sub
	return Result{Sub: sub.Clone()}, []Change{subChange(sub)}
}

func applyUpdateSub(st *State, idx uint64, c *UpdateSub) (Result, []Change) {
	cur, ok := st.Subs[c.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	if c.ExpectVersion != 0 && cur.Version != c.ExpectVersion {
		return Result{Err: ErrConflict}, nil
	}
	sub := cur.Clone()
	if c.Spec.Secret != cur.Secret {
		sub.PrevSecret, sub.PrevSecretUntilMs = "", 0
		if c.SecretOverlapUntilMs > 0 {
			sub.PrevSecret, sub.PrevSecretUntilMs = cur.Secret, c.SecretOverlapUntilMs
		}
	}
	sub.SubSpec = c.Spec
	sub.Filters = append([]Filter(nil), c.Spec.Filters...)
	sub.Version = idx
	sub.UpdatedMs = c.AtMs
	if c.ResetPosts {
		sub.Counters.Posts = 0
	}
	if c.ResetErrors {
		sub.Counters.Errors = 0
	}
	moved := false
	if c.Home != "" {
		sub.HomeNode = c.Home
		if sub.GeoSupport == GeoNo && sub.Owner != c.Home {
			sub.Owner = c.Home
			sub.Generation++
			moved = true
		}
	}
	if sub.Status == StatusWaiting && (sub.GeoSupport != GeoNo || moved) {
		// It no longer waits for that node (the leader says so again if
		// its new home is down too).
		sub.Status = settledStatus(&sub.Counters)
	}
	st.Subs[sub.ID] = sub
	return Result{Sub: sub.Clone()}, []Change{subChange(sub)}
}

func applyDeleteSub(st *State, c *DeleteSub) (Result, []Change) {
	if _, ok := st.Subs[c.ID]; !ok {
		return Result{Err: ErrNotFound}, nil
	}
	delete(st.Subs, c.ID)
	return Result{}, []Change{{Bucket: BucketSubs, Key: c.ID}}
}

func applySetPaused(st *State, c *SetPaused) (Result, []Change) {
	cur, ok := st.Subs[c.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	sub := cur.Clone()
	sub.Paused = c.Paused
	sub.UpdatedMs = c.AtMs
	if !c.Paused && sub.Status == StatusSuspended {
		// Resuming a suspended subscription is how an operator says the
		// endpoint is back: try again from where it stopped. Its last
		// attempt failed (pending is only for one that never posted).
		sub.Status = StatusError
		if sub.Counters.LastPostMs == 0 && sub.Counters.LastErrorMs == 0 {
			sub.Status = StatusPending
		}
	}
	st.Subs[sub.ID] = sub
	return Result{Sub: sub.Clone()}, []Change{subChange(sub)}
}

func applyCreateToken(st *State, c *CreateToken) (Result, []Change) {
	if _, ok := st.Tokens[c.Token.ID]; ok {
		return Result{Err: ErrExists}, nil
	}
	if _, ok := st.tokenByHash[c.Token.Hash]; ok {
		return Result{Err: ErrExists}, nil
	}
	t := c.Token
	st.Tokens[t.ID] = &t
	st.tokenByHash[t.Hash] = t.ID
	out := t
	return Result{Token: &out}, []Change{record(BucketTokens, t.ID, &t)}
}

func applyRevokeToken(st *State, c *RevokeToken) (Result, []Change) {
	t, ok := st.Tokens[c.ID]
	if !ok {
		return Result{Err: ErrNotFound}, nil
	}
	delete(st.Tokens, c.ID)
	delete(st.tokenByHash, t.Hash)
	return Result{}, []Change{{Bucket: BucketTokens, Key: c.ID}}
}

func applyRegisterNode(st *State, c *RegisterNode) (Result, []Change) {
	n := c.Node
	if old, ok := st.Nodes[n.ID]; ok {
		// Addresses change; what the cluster learned of the node stays.
		if old.JoinedMs != 0 {
			n.JoinedMs = old.JoinedMs
		}
		n.LastReportSeq, n.LastReportMs = old.LastReportSeq, old.LastReportMs
		n.Health, n.UpSinceMs, n.Draining = old.Health, old.UpSinceMs, old.Draining
	}
	st.Nodes[n.ID] = &n
	changes := []Change{record(BucketNodes, n.ID, &n)}
	if c.TokenHash != "" {
		id := NodeTokenID(n.ID)
		if old, ok := st.Tokens[id]; ok {
			delete(st.tokenByHash, old.Hash)
		}
		if _, taken := st.tokenByHash[c.TokenHash]; !taken {
			t := Token{ID: id, Name: "node " + n.ID, Role: RoleNode, Hash: c.TokenHash, CreatedMs: n.JoinedMs}
			st.Tokens[id] = &t
			st.tokenByHash[t.Hash] = id
			changes = append(changes, record(BucketTokens, id, &t))
		}
	}
	return Result{}, changes
}

// NodeTokenID is the id of a node's node-to-node token.
func NodeTokenID(node string) string { return "node-" + node }

func subChange(sub *Subscription) Change { return record(BucketSubs, sub.ID, sub) }

func record(bucket, key string, v any) Change {
	b, err := json.Marshal(v)
	if err != nil {
		// The state types are plain structs; marshalling cannot fail.
		panic(fmt.Sprintf("fsm: marshal %s/%s: %v", bucket, key, err))
	}
	return Change{Bucket: bucket, Key: key, Value: b}
}

// Load rebuilds a state from persisted records, as visited by a Persister.
func (s *State) Load(bucket, key string, value []byte) error {
	switch bucket {
	case BucketSubs:
		var sub Subscription
		if err := json.Unmarshal(value, &sub); err != nil {
			return fmt.Errorf("fsm: load sub %q: %w", key, err)
		}
		s.Subs[sub.ID] = &sub
	case BucketTokens:
		var t Token
		if err := json.Unmarshal(value, &t); err != nil {
			return fmt.Errorf("fsm: load token %q: %w", key, err)
		}
		s.Tokens[t.ID] = &t
		s.tokenByHash[t.Hash] = t.ID
	case BucketNodes:
		var n Node
		if err := json.Unmarshal(value, &n); err != nil {
			return fmt.Errorf("fsm: load node %q: %w", key, err)
		}
		s.Nodes[n.ID] = &n
	}
	return nil
}

type resultWire struct {
	Err   string        `json:"error,omitempty"`
	Sub   *Subscription `json:"sub,omitempty"`
	Token *Token        `json:"token,omitempty"`
}

// MarshalJSON encodes a result for a forwarded write, keeping its sentinel.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(resultWire{Err: ErrorCode(r.Err), Sub: r.Sub, Token: r.Token})
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (r *Result) UnmarshalJSON(b []byte) error {
	var w resultWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Result{Err: ErrorFromCode(w.Err), Sub: w.Sub, Token: w.Token}
	return nil
}
