package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// leaderBarrierTimeout bounds the Barrier a new leader issues before it
// acts on the state.
const leaderBarrierTimeout = 30 * time.Second

// leaderLoop runs leader-only duties while this node leads: it starts them
// (after a Barrier, so the FSM has every committed entry) on gaining
// leadership and cancels them on losing it.
func (n *Node) leaderLoop() {
	stop := func() {}
	defer func() { stop() }()
	leaderCh := n.raft.LeaderCh()
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-leaderCh:
			stop()
			stop = func() {}
			if !isLeader {
				n.log.Info("lost leadership")
				continue
			}
			n.log.Info("gained leadership")
			ctx, cancel := context.WithCancel(n.ctx)
			stop = cancel
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.leaderDuties(ctx)
			}()
		}
	}
}

func (n *Node) leaderDuties(ctx context.Context) {
	if err := n.raft.Barrier(leaderBarrierTimeout).Error(); err != nil {
		n.log.Warn("barrier failed; waiting for the next leadership", "err", err)
		return
	}
	if err := n.ensureSelf(ctx); err != nil && ctx.Err() == nil {
		n.log.Error("could not register this node", "err", err)
	}
	// Autopilot keeps at most cfg.Voters voters (voters.go) beside the
	// reconciler, for as long as the reconciler runs.
	apCtx, stopAutopilot := context.WithCancel(ctx)
	apDone := make(chan struct{})
	go func() {
		defer close(apDone)
		n.runAutopilot(apCtx)
	}()
	newReconciler(n).run(ctx)
	stopAutopilot()
	<-apDone
}

// ensureSelf commits this node's registration, its node token and (after
// the first bootstrap) the root token when the state lacks them.
func (n *Node) ensureSelf(ctx context.Context) error {
	var (
		me       *fsm.Node
		nodeTok  bool
		hasSuper bool
		hasRoot  bool
	)
	n.fsm.Read(func(st *fsm.State) {
		if nd, ok := st.Nodes[n.id]; ok {
			c := *nd
			me = &c
		}
		_, nodeTok = st.TokenByHash(httpapi.HashToken(n.nodeToken))
		_, hasRoot = st.Tokens[RootTokenID]
		for _, t := range st.Tokens {
			hasSuper = hasSuper || t.Role == fsm.RoleSuper
		}
	})
	now := time.Now().UnixMilli()
	// The root token is committed once, by the node that bootstrapped the
	// cluster. Once any super token exists it is not recreated, so revoking
	// the root token sticks.
	if !hasRoot && !hasSuper {
		b, err := os.ReadFile(filepath.Join(n.cfg.DataDir, RootTokenFile))
		if err == nil {
			t := fsm.Token{ID: RootTokenID, Name: "root (bootstrap)", Role: fsm.RoleSuper, Hash: httpapi.HashToken(strings.TrimSpace(string(b))), CreatedMs: now}
			if err := n.applyChecked(ctx, &fsm.CreateToken{Token: t}); err != nil {
				return err
			}
			n.log.Info("committed the root token", "file", RootTokenFile)
		}
	}
	// Registration last: readiness waits for it, so a ready node already
	// accepts the root token.
	if me == nil || me.HTTPAddr != n.advHTTP || me.RaftAddr != n.advRaft || me.Witness != n.cfg.Witness || !nodeTok {
		if err := n.applyChecked(ctx, n.registration(now)); err != nil {
			return err
		}
	}
	return nil
}

// registration is the command that registers this node with its current
// addresses and node token.
func (n *Node) registration(nowMs int64) *fsm.RegisterNode {
	return &fsm.RegisterNode{
		Node:      fsm.Node{ID: n.id, RaftAddr: n.advRaft, HTTPAddr: n.advHTTP, Witness: n.cfg.Witness, JoinedMs: nowMs},
		TokenHash: httpapi.HashToken(n.nodeToken),
	}
}

func (n *Node) applyChecked(ctx context.Context, c fsm.Command) error {
	res, err := n.Apply(ctx, c)
	if err != nil {
		return err
	}
	return res.Err
}

// Cluster implements httpapi.Internal.
func (n *Node) Cluster() httpapi.ClusterView {
	_, leaderID := n.raft.LeaderWithID()
	v := httpapi.ClusterView{Leader: string(leaderID), Nodes: []httpapi.NodeView{}}
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil {
		return v
	}
	active := map[string]int{}
	nodes := map[string]fsm.Node{}
	n.fsm.Read(func(st *fsm.State) {
		for _, s := range st.Subs {
			if !s.Paused {
				active[s.Owner]++
			}
		}
		for id, nd := range st.Nodes {
			nodes[id] = *nd
		}
	})
	for _, srv := range cf.Configuration().Servers {
		id := string(srv.ID)
		nd := nodes[id]
		role := "follower"
		if srv.ID == leaderID {
			role = "leader"
		}
		suffrage := "voter"
		if srv.Suffrage != raft.Voter {
			suffrage = "nonvoter"
		}
		health := nd.Health
		if health == "" {
			health = "unknown" // no report committed yet
		}
		up := nd.Health == fsm.HealthUp
		view := httpapi.NodeView{
			ID: id, HTTPAddr: nd.HTTPAddr, RaftAddr: string(srv.Address), Suffrage: suffrage,
			RaftRole: role, Health: health, Witness: nd.Witness, Draining: nd.Draining, ActiveSub: active[id],
			Stable: up && time.Since(time.UnixMilli(nd.UpSinceMs)) >= n.cfg.StableAfter,
		}
		if up {
			view.UpSince = time.UnixMilli(nd.UpSinceMs).UTC().Format(time.RFC3339)
		}
		v.Nodes = append(v.Nodes, view)
	}
	return v
}
