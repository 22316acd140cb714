package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/fsm/backup"
	"github.com/hookswitch/hookswitch/httpapi"
)

// restoreLeaderTimeout bounds how long a node bootstrapping from a
// snapshot file waits to lead its one-node cluster before it commits the
// file's state.
const restoreLeaderTimeout = 30 * time.Second

// restoreProgressEvery is how many records apart a restore's progress is
// logged.
const restoreProgressEvery = 10000

// ErrRestoreRefused is returned by Start when --restore cannot be honoured
// (a data dir with state, or no --bootstrap).
var ErrRestoreRefused = errors.New("restore refused")

// SaveSnapshot implements httpapi.Backups: the replicated state as this
// node has applied it; the leader first makes sure it applied every
// committed entry.
func (n *Node) SaveSnapshot(ctx context.Context) (*backup.Snapshot, error) {
	if n.raft.State() == raft.Leader {
		if err := n.raft.Barrier(raftChangeTimeout).Error(); err != nil {
			return nil, fmt.Errorf("barrier: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var s *backup.Snapshot
	n.fsm.Read(func(st *fsm.State) {
		s = backup.FromState(st, backup.Header{CreatedMs: time.Now().UnixMilli(), SourceNode: n.id, Applied: n.fsm.Applied()})
	})
	return s, nil
}

// RestoreSnapshot implements httpapi.Backups: one RestoreState entry
// replaces the running cluster's subscriptions and API tokens; its
// membership and node tokens stay.
func (n *Node) RestoreSnapshot(ctx context.Context, s *backup.Snapshot) (httpapi.RestoreResult, error) {
	c := restoreCommand(s, false)
	if err := n.applyChecked(ctx, c); err != nil {
		return httpapi.RestoreResult{}, err
	}
	n.log.Info("restored subscriptions and tokens from a snapshot", "subs", len(c.Subs), "tokens", len(c.Tokens),
		"source-node", s.Header.SourceNode, "saved-at", time.UnixMilli(s.Header.CreatedMs).UTC().Format(time.RFC3339))
	return httpapi.RestoreResult{Subs: len(c.Subs), Tokens: len(c.Tokens), From: s.Header}, nil
}

// restoreCommand is the entry that restores s: subscriptions and API
// tokens (not the file's node tokens), and with members the file's
// membership (a new cluster only).
func restoreCommand(s *backup.Snapshot, members bool) *fsm.RestoreState {
	c := &fsm.RestoreState{Subs: s.Subs, AtMs: time.Now().UnixMilli()}
	for _, t := range s.Tokens {
		if t.Role != fsm.RoleNode {
			c.Tokens = append(c.Tokens, t)
		}
	}
	if members {
		c.Nodes = s.Nodes
	}
	return c
}

// readRestoreFile reads and checks the --restore file, logging progress.
func (n *Node) readRestoreFile() (*backup.Snapshot, error) {
	s, err := backup.ReadFile(n.cfg.Restore, func(done, total int) {
		if done%restoreProgressEvery == 0 && total >= restoreProgressEvery {
			n.log.Info("reading the snapshot file", "records", done, "of", total)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrRestoreRefused, n.cfg.Restore, err)
	}
	h := s.Header
	n.log.Info("read the snapshot file", "file", n.cfg.Restore, "subs", h.Subs, "tokens", h.Tokens, "nodes", h.Nodes,
		"source-node", h.SourceNode, "saved-at", time.UnixMilli(h.CreatedMs).UTC().Format(time.RFC3339))
	return s, nil
}

// hasSuperToken reports whether the snapshot holds a super token: the
// restored cluster is then managed with the saved cluster's tokens and no
// new root token is made.
func hasSuperToken(s *backup.Snapshot) bool {
	for _, t := range s.Tokens {
		if t.Role == fsm.RoleSuper {
			return true
		}
	}
	return false
}

// seedFromSnapshot commits the snapshot's state as the first entry of the
// cluster this node just bootstrapped, before it serves: it waits to lead
// (a one-node cluster elects itself), then applies one RestoreState with
// the file's membership.
func (n *Node) seedFromSnapshot(s *backup.Snapshot) error {
	deadline := time.Now().Add(restoreLeaderTimeout)
	for n.raft.State() != raft.Leader {
		if time.Now().After(deadline) {
			return fmt.Errorf("node: restore: not leader of the new cluster after %s", restoreLeaderTimeout)
		}
		time.Sleep(leaderWaitPoll)
	}
	c := restoreCommand(s, true)
	data, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	n.log.Info("committing the snapshot's state", "subs", len(c.Subs), "tokens", len(c.Tokens), "bytes", len(data))
	res, err := n.applyLocal(data)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return fmt.Errorf("node: restore: %w", err)
	}
	n.log.Info("restored the snapshot into the new cluster", "subs", len(c.Subs), "tokens", len(c.Tokens), "members-known", len(c.Nodes))
	return nil
}
