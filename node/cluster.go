package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// Timings of membership changes.
const (
	joinRetryMin       = 500 * time.Millisecond
	joinRetryMax       = 10 * time.Second
	raftChangeTimeout  = 10 * time.Second
	leaveDrainTimeout  = 30 * time.Second
	leaveDrainPoll     = 100 * time.Millisecond
	clusterCallTimeout = 15 * time.Second
)

// joinLoop asks the members in cfg.Join, in turn, to add this node, with
// backoff, until one answers yes or the node stops.
func (n *Node) joinLoop() {
	backoff := joinRetryMin
	req := n.joinRequest()
	for attempt := 0; ; attempt++ {
		member := strings.TrimSpace(n.cfg.Join[attempt%len(n.cfg.Join)])
		ctx, cancel := context.WithTimeout(n.ctx, clusterCallTimeout)
		err := n.postCluster(ctx, member, "/v1/cluster/join", n.cfg.JoinToken, req)
		cancel()
		if err == nil {
			n.log.Info("joined the cluster", "via", member)
			n.keepJoinToken()
			n.logCatchUp()
			return
		}
		n.log.Warn("join attempt failed; retrying", "member", member, "err", err, "in", backoff)
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, joinRetryMax)
	}
}

// Self implements httpapi.Internal.
func (n *Node) Self() httpapi.JoinRequest { return n.joinRequest() }

func (n *Node) joinRequest() httpapi.JoinRequest {
	return httpapi.JoinRequest{
		ID: n.id, RaftAddr: n.advRaft, HTTPAddr: n.advHTTP, Witness: n.cfg.Witness,
		TokenHash: httpapi.HashToken(n.nodeToken), Fresh: n.fresh,
	}
}

// postCluster POSTs a JSON body to another node with a bearer token.
func (n *Node) postCluster(ctx context.Context, addr, path, token string, body any) error {
	return n.callCluster(ctx, http.MethodPost, addr, path, token, body)
}

func (n *Node) callCluster(ctx context.Context, method, addr, path, token string, body any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	if !strings.Contains(addr, "://") {
		addr = n.scheme() + "://" + addr
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(addr, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := n.forwarder.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusUnauthorized && path == "/v1/cluster/join" {
		return fmt.Errorf("%w: %s answered %s", httpapi.ErrJoinRefused, addr, strings.TrimSpace(string(msg)))
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Join implements httpapi.Internal: add a node to the cluster. presented is
// the bearer secret of the request, which must be the cluster's join token
// (compared in constant time). On a follower the request is forwarded to
// the leader, which checks it again; a follower that knows no join token
// leaves the check to the leader.
func (n *Node) Join(ctx context.Context, req httpapi.JoinRequest, presented string) error {
	if n.joinToken != "" {
		if err := n.checkJoinToken(presented); err != nil {
			return err
		}
	}
	if n.raft.State() != raft.Leader {
		addr, self, err := n.leaderHTTP(ctx)
		if err != nil {
			return err
		}
		if !self {
			return n.postCluster(ctx, addr, "/v1/cluster/join", presented, req)
		}
	}
	// The leader adds the node: it always checks the token itself.
	if err := n.checkJoinToken(presented); err != nil {
		return err
	}
	// The voter count and the change that depends on it are not
	// interleaved with another join or a promotion.
	n.membershipMu.Lock()
	defer n.membershipMu.Unlock()
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	member := false
	for _, s := range cf.Configuration().Servers {
		sameID, sameAddr := string(s.ID) == req.ID, string(s.Address) == req.RaftAddr
		switch {
		case sameID && sameAddr && !req.Fresh:
			member = true
		case sameID || sameAddr:
			// A stale entry (the node came back with another address or
			// without its raft state, or another node took this address):
			// replace it. A wiped node must not keep the votes it forgot.
			if err := n.raft.RemoveServer(s.ID, 0, raftChangeTimeout).Error(); err != nil {
				return fmt.Errorf("remove stale member %s: %w", s.ID, err)
			}
		}
	}
	suffrage := "already a member"
	if !member {
		// Up to cfg.Voters voters (witnesses count); then non-voters,
		// promoted by autopilot when a voter is missing (voters.go).
		add, what := n.raft.AddVoter, "voter"
		if n.voters() >= n.cfg.Voters {
			add, what = n.raft.AddNonvoter, "nonvoter"
		}
		if err := add(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, raftChangeTimeout).Error(); err != nil {
			return fmt.Errorf("add %s %s: %w", what, req.ID, err)
		}
		suffrage = what
	}
	reg := &fsm.RegisterNode{
		Node:      fsm.Node{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, Witness: req.Witness, JoinedMs: time.Now().UnixMilli()},
		TokenHash: req.TokenHash,
	}
	if err := n.applyChecked(ctx, reg); err != nil {
		return err
	}
	n.log.Info("node joined", "joined", req.ID, "raft", req.RaftAddr, "http", req.HTTPAddr, "witness", req.Witness, "as", suffrage)
	return nil
}

// leaderHTTP returns the leader's HTTP address, or self=true when this
// node leads. During an election (or just after handing leadership over)
// it waits for a leader, up to raftChangeTimeout or the end of ctx, so a
// membership request is forwarded instead of failing.
func (n *Node) leaderHTTP(ctx context.Context) (addr string, self bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, raftChangeTimeout)
	defer cancel()
	for {
		if n.raft.State() == raft.Leader {
			return "", true, nil
		}
		_, id := n.raft.LeaderWithID()
		switch {
		case id == "" || id == raft.ServerID(n.id):
			err = errors.New("no leader now; try again")
		default:
			n.fsm.Read(func(st *fsm.State) {
				if nd, ok := st.Nodes[string(id)]; ok {
					addr = nd.HTTPAddr
				}
			})
			if addr != "" {
				return addr, false, nil
			}
			err = fmt.Errorf("leader %s has no known HTTP address yet", id)
		}
		select {
		case <-ctx.Done():
			return "", false, err
		case <-n.ctx.Done():
			return "", false, ErrStopped
		case <-time.After(leaderWaitPoll):
		}
	}
}

// RemoveNode implements httpapi.Internal: remove a node from raft and the
// state (its subscriptions are reassigned by the reconciler).
func (n *Node) RemoveNode(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		addr, self, err := n.leaderHTTP(ctx)
		if err != nil {
			return err
		}
		if !self {
			return n.callCluster(ctx, http.MethodDelete, addr, "/v1/cluster/nodes/"+id, n.nodeToken, nil)
		}
	}
	if id == n.id {
		// The leader removing itself hands leadership over first.
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("leadership transfer before removing myself: %w", err)
		}
		return n.RemoveNode(ctx, id)
	}
	var known bool
	n.fsm.Read(func(st *fsm.State) { _, known = st.Nodes[id] })
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, raftChangeTimeout).Error(); err != nil {
		return fmt.Errorf("remove %s from raft: %w", id, err)
	}
	if known {
		if err := n.applyChecked(ctx, &fsm.RemoveNode{Node: id}); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return err
		}
	}
	n.log.Info("node removed", "removed", id)
	return nil
}

// Leave implements httpapi.Internal: this node drains (its subscriptions
// move to others), removes itself from the cluster, and then stops (Done
// is closed).
func (n *Node) Leave(ctx context.Context) error {
	if err := n.applyChecked(ctx, &fsm.SetDraining{Node: n.id, Draining: true}); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	deadline := time.Now().Add(leaveDrainTimeout)
	for time.Now().Before(deadline) && n.owned() > 0 && n.voters() > 1 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(leaveDrainPoll):
		}
	}
	if err := n.RemoveNode(ctx, n.id); err != nil {
		return err
	}
	n.leaveOnce.Do(func() { close(n.left) })
	return nil
}

// owned counts the subscriptions assigned to this node.
func (n *Node) owned() int {
	c := 0
	n.fsm.Read(func(st *fsm.State) {
		for _, s := range st.Subs {
			if s.Owner == n.id {
				c++
			}
		}
	})
	return c
}

// Left is closed when this node has left the cluster and should stop.
func (n *Node) Left() <-chan struct{} { return n.left }

// catchUpLogEvery is how often a joined node logs its catch-up progress;
// catchUpPoll how often it checks it.
const (
	catchUpLogEvery = 2 * time.Second
	catchUpPoll     = 100 * time.Millisecond
)

// logCatchUp logs a joined node's progress through the cluster's raft log
// (a snapshot, then entries) until it has applied what it knows to be
// committed and its own registration, or the node stops.
func (n *Node) logCatchUp() {
	t := time.NewTicker(catchUpPoll)
	defer t.Stop()
	started := time.Now()
	var logged time.Time
	for {
		applied := n.raft.AppliedIndex()
		commit, _ := strconv.ParseUint(n.raft.Stats()["commit_index"], 10, 64)
		var registered bool
		n.fsm.Read(func(st *fsm.State) { _, registered = st.Nodes[n.id] })
		if commit > 0 && applied >= commit && registered {
			n.log.Info("caught up with the cluster", "applied-index", applied, "took", time.Since(started).Round(time.Millisecond))
			return
		}
		switch {
		case logged.IsZero():
			n.log.Info("catching up with the cluster", "applied-index", applied, "commit-index", commit)
			logged = time.Now()
		case time.Since(logged) >= catchUpLogEvery:
			n.log.Info("still catching up with the cluster", "applied-index", applied, "commit-index", commit,
				"for", time.Since(started).Round(time.Second))
			logged = time.Now()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
	}
}
