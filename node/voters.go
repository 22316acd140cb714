package node

import (
	"context"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/hookswitch/hookswitch/fsm"
)

// Raft voters past five nodes (DESIGN.md "Cluster, health, failover",
// docs/scaling.md). The cluster keeps at most cfg.Voters raft voters,
// witnesses included; a node that joins when they are all taken joins as a
// non-voter (Join, cluster.go). While this node leads, raft-autopilot runs
// the membership loop with voterPilot as both its application integration
// and its promoter:
//   - a server's health is the committed health in the FSM (the
//     reconciler's verdict), not raft replication statistics, which raft
//     v1.7.3 does not expose for followers;
//   - a voter is replaced when it has not been up for down-after ×
//     replaceAfterFactor, counted from when this leader first saw it not
//     up (so a new leader waits the whole time again);
//   - the replacement is a stable non-voter (up for stable-after, not
//     draining), the longest up first;
//   - a voter that is long down is demoted only when a non-voter takes its
//     place, so a cluster of at most `voters` nodes keeps every node a
//     voter, as before;
//   - voters above the cap (the setting was lowered) are demoted, never
//     the leader.
//
// Demoted nodes stay members: one that comes back is a non-voter, promoted
// again when a voter is missing. Autopilot's dead-server cleanup is off:
// nodes leave with `leave` or DELETE /v1/cluster/nodes/{id}.

// replaceAfterFactor: a voter not up for down-after × replaceAfterFactor
// is replaced by a stable non-voter.
const replaceAfterFactor = 6

// voterInfo is what the promotion rule knows of one raft server.
type voterInfo struct {
	ID     string
	Voter  bool // a voter now (the leader included)
	Leader bool
	// Known: the FSM has the node's registration.
	Known bool
	// Up is the committed health; Stable is up for stable-after.
	Up, Stable bool
	// LongDown: not up for down-after × replaceAfterFactor, as this
	// leader has seen it.
	LongDown  bool
	Draining  bool
	UpSinceMs int64
}

// voterChanges are the suffrage changes the rule asks for.
type voterChanges struct {
	Promote []string
	Demote  []string
}

// decideVoters is the promotion rule, a pure function of the servers and
// the cap (see the top of this file). Non-voters are promoted to fill
// the places of missing or long-down voters; a long-down voter is demoted
// when a promotion takes its place; voters above the cap are demoted,
// the least settled first and never the leader.
func decideVoters(limit int, servers []voterInfo) voterChanges {
	var keep, long, candidates []voterInfo
	for _, s := range servers {
		switch {
		case s.Voter && (s.Leader || !s.LongDown):
			keep = append(keep, s)
		case s.Voter:
			long = append(long, s)
		case s.Known && s.Up && s.Stable && !s.Draining:
			candidates = append(candidates, s)
		}
	}
	var ch voterChanges
	if len(keep) > limit {
		// Too many voters (the cap was lowered): demote the least
		// settled ones, and every long-down one.
		slices.SortFunc(keep, func(a, b voterInfo) int { return compareSettled(b, a) })
		for _, s := range keep {
			if len(keep)-len(ch.Demote) <= limit {
				break
			}
			if !s.Leader {
				ch.Demote = append(ch.Demote, s.ID)
			}
		}
		for _, s := range long {
			ch.Demote = append(ch.Demote, s.ID)
		}
		return ch
	}
	slots := limit - len(keep)
	slices.SortFunc(candidates, compareSettled)
	for _, s := range candidates[:min(slots, len(candidates))] {
		ch.Promote = append(ch.Promote, s.ID)
	}
	// A long-down voter keeps its place while no non-voter can take it.
	vacant := slots - len(ch.Promote)
	slices.SortFunc(long, func(a, b voterInfo) int { return strings.Compare(a.ID, b.ID) })
	for i, s := range long {
		if i >= vacant {
			ch.Demote = append(ch.Demote, s.ID)
		}
	}
	return ch
}

// compareSettled orders servers from the most settled to the least: up
// before not up, stable before not stable, up longest first, then by id.
func compareSettled(a, b voterInfo) int {
	rank := func(s voterInfo) int {
		switch {
		case s.Up && s.Stable:
			return 0
		case s.Up:
			return 1
		case s.Known:
			return 2
		}
		return 3
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	if a.Up && a.UpSinceMs != b.UpSinceMs {
		if a.UpSinceMs < b.UpSinceMs {
			return -1
		}
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}

// voterPilot is autopilot's ApplicationIntegration and Promoter over this
// node while it leads. One is made per term of leadership, so its memory
// of when a server was first seen not up starts with the term.
type voterPilot struct {
	n   *Node
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	// notUpSince: when this leader first saw each server not up.
	notUpSince map[raft.ServerID]time.Time
	// voters is the last voter set NotifyState logged.
	voters string
}

func newVoterPilot(n *Node) *voterPilot {
	return &voterPilot{n: n, log: n.log.With("component", "voters"), now: time.Now, notUpSince: map[raft.ServerID]time.Time{}}
}

// replaceAfter is how long a voter is not up before it is replaced.
func (p *voterPilot) replaceAfter() time.Duration {
	return p.n.cfg.DownAfter * replaceAfterFactor
}

// runAutopilot runs raft-autopilot until ctx ends (this node's term of
// leadership), and waits for it to stop.
func (n *Node) runAutopilot(ctx context.Context) {
	p := newVoterPilot(n)
	ap := autopilot.New(&serialRaft{Raft: n.raft, mu: &n.membershipMu}, p,
		autopilot.WithPromoter(p),
		autopilot.WithLogger(autopilotLogger(n.log)),
		autopilot.WithUpdateInterval(max(n.cfg.DownAfter/4, 50*time.Millisecond)),
		autopilot.WithReconcileInterval(max(n.cfg.DownAfter/2, 100*time.Millisecond)),
	)
	ap.Start(ctx)
	<-ctx.Done()
	<-ap.Stop()
}

// observe returns what the promotion rule needs of every server of the
// raft configuration, at now, from the committed node records; it keeps
// the time each server was first seen not up.
func (p *voterPilot) observe(now time.Time, servers []raft.Server, st *fsm.State) map[raft.ServerID]*autopilot.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[raft.ServerID]*autopilot.Server, len(servers))
	present := map[raft.ServerID]bool{}
	for _, srv := range servers {
		present[srv.ID] = true
		nd := st.Nodes[string(srv.ID)]
		up := nd != nil && nd.Health == fsm.HealthUp
		if up {
			delete(p.notUpSince, srv.ID)
		} else if _, ok := p.notUpSince[srv.ID]; !ok {
			p.notUpSince[srv.ID] = now
		}
		info := voterInfo{ID: string(srv.ID), Known: nd != nil, Up: up}
		if nd != nil {
			info.Draining = nd.Draining
			if up {
				info.UpSinceMs = nd.UpSinceMs
				info.Stable = now.UnixMilli()-nd.UpSinceMs >= p.n.cfg.StableAfter.Milliseconds()
			}
		}
		if !up {
			info.LongDown = now.Sub(p.notUpSince[srv.ID]) >= p.replaceAfter()
		}
		status := autopilot.NodeFailed
		switch {
		case up:
			status = autopilot.NodeAlive
		case nd == nil:
			status = autopilot.NodeUnknown
		}
		out[srv.ID] = &autopilot.Server{
			ID: srv.ID, Name: string(srv.ID), Address: srv.Address, NodeStatus: status,
			IsLeader: string(srv.ID) == p.n.id, Ext: info,
		}
	}
	for id := range p.notUpSince {
		if !present[id] {
			delete(p.notUpSince, id)
		}
	}
	return out
}

// AutopilotConfig implements autopilot.ApplicationIntegration. Dead
// servers are never removed by autopilot; the health thresholds accept
// the statistics FetchServerStats derives from the committed health.
func (p *voterPilot) AutopilotConfig() *autopilot.Config {
	return &autopilot.Config{
		CleanupDeadServers:      false,
		LastContactThreshold:    p.n.cfg.DownAfter,
		MaxTrailingLogs:         math.MaxUint32,
		ServerStabilizationTime: p.n.cfg.StableAfter,
	}
}

// KnownServers implements autopilot.ApplicationIntegration: every server
// of the raft configuration, with its committed health.
func (p *voterPilot) KnownServers() map[raft.ServerID]*autopilot.Server {
	f := p.n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out map[raft.ServerID]*autopilot.Server
	now := p.now()
	p.n.fsm.Read(func(st *fsm.State) { out = p.observe(now, f.Configuration().Servers, st) })
	return out
}

// FetchServerStats implements autopilot.ApplicationIntegration. The
// statistics are derived from the committed health rather than fetched: an
// up node is in contact and on the leader's term and index, any other is
// out of contact. So autopilot's "healthy" is the reconciler's "up".
func (p *voterPilot) FetchServerStats(_ context.Context, servers map[raft.ServerID]*autopilot.Server) map[raft.ServerID]*autopilot.ServerStats {
	term, _ := strconv.ParseUint(p.n.raft.Stats()["last_log_term"], 10, 64)
	index := p.n.raft.LastIndex()
	out := make(map[raft.ServerID]*autopilot.ServerStats, len(servers))
	for id, srv := range servers {
		if srv.NodeStatus == autopilot.NodeAlive {
			out[id] = &autopilot.ServerStats{LastTerm: term, LastIndex: index}
		} else {
			out[id] = &autopilot.ServerStats{LastContact: -1}
		}
	}
	return out
}

// NotifyState implements autopilot.ApplicationIntegration: it logs the
// voter set when it changes.
func (p *voterPilot) NotifyState(s *autopilot.State) {
	ids := make([]string, len(s.Voters))
	for i, id := range s.Voters {
		ids[i] = string(id)
	}
	slices.Sort(ids)
	set := strings.Join(ids, ",")
	p.mu.Lock()
	changed := set != p.voters
	p.voters = set
	p.mu.Unlock()
	if changed {
		p.log.Info("raft voters", "voters", ids, "failure-tolerance", s.FailureTolerance, "limit", p.n.cfg.Voters)
	}
}

// RemoveFailedServer implements autopilot.ApplicationIntegration. It is
// never called: dead-server cleanup is off.
func (p *voterPilot) RemoveFailedServer(*autopilot.Server) {}

// GetServerExt implements autopilot.Promoter: the server's voterInfo is
// already in Ext (KnownServers).
func (p *voterPilot) GetServerExt(*autopilot.Config, *autopilot.ServerState) any { return nil }

// GetStateExt implements autopilot.Promoter.
func (p *voterPilot) GetStateExt(*autopilot.Config, *autopilot.State) any { return nil }

// GetNodeTypes implements autopilot.Promoter: every node may vote.
func (p *voterPilot) GetNodeTypes(_ *autopilot.Config, s *autopilot.State) map[raft.ServerID]autopilot.NodeType {
	out := make(map[raft.ServerID]autopilot.NodeType, len(s.Servers))
	for id := range s.Servers {
		out[id] = autopilot.NodeVoter
	}
	return out
}

// CalculatePromotionsAndDemotions implements autopilot.Promoter with
// decideVoters. Autopilot applies at most one demotion of a failed voter
// before promoting (when the voters are odd), promotes only healthy
// servers, and demotes the rest in a later round.
func (p *voterPilot) CalculatePromotionsAndDemotions(_ *autopilot.Config, s *autopilot.State) autopilot.RaftChanges {
	ch := decideVoters(p.n.cfg.Voters, voterInfos(s))
	var out autopilot.RaftChanges
	for _, id := range ch.Promote {
		out.Promotions = append(out.Promotions, raft.ServerID(id))
	}
	for _, id := range ch.Demote {
		out.Demotions = append(out.Demotions, raft.ServerID(id))
	}
	return out
}

// voterInfos reads the promotion rule's input from autopilot's state.
func voterInfos(s *autopilot.State) []voterInfo {
	out := make([]voterInfo, 0, len(s.Servers))
	for id, srv := range s.Servers {
		info, ok := srv.Server.Ext.(voterInfo)
		if !ok {
			info = voterInfo{ID: string(id)} // not in our view yet: neither up nor long down
		}
		info.Voter = srv.HasVotingRights() || srv.State == autopilot.RaftStaging
		info.Leader = srv.State == autopilot.RaftLeader
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b voterInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// FilterFailedServerRemovals implements autopilot.Promoter: nothing is
// removed.
func (p *voterPilot) FilterFailedServerRemovals(*autopilot.Config, *autopilot.State, *autopilot.FailedServers) *autopilot.FailedServers {
	return &autopilot.FailedServers{}
}

// IsPotentialVoter implements autopilot.Promoter.
func (p *voterPilot) IsPotentialVoter(t autopilot.NodeType) bool { return t == autopilot.NodeVoter }

// serialRaft is raft as autopilot sees it: its membership changes hold mu
// until they are committed, so a join's count of the voters and its own
// change are never interleaved with a promotion.
type serialRaft struct {
	*raft.Raft
	mu *sync.Mutex
}

func (r *serialRaft) serial(f func() raft.IndexFuture) raft.IndexFuture {
	r.mu.Lock()
	defer r.mu.Unlock()
	fut := f()
	_ = fut.Error() // waits; the caller reads the same error again
	return fut
}

func (r *serialRaft) AddVoter(id raft.ServerID, addr raft.ServerAddress, prev uint64, timeout time.Duration) raft.IndexFuture {
	return r.serial(func() raft.IndexFuture { return r.Raft.AddVoter(id, addr, prev, timeout) })
}

func (r *serialRaft) AddNonvoter(id raft.ServerID, addr raft.ServerAddress, prev uint64, timeout time.Duration) raft.IndexFuture {
	return r.serial(func() raft.IndexFuture { return r.Raft.AddNonvoter(id, addr, prev, timeout) })
}

func (r *serialRaft) DemoteVoter(id raft.ServerID, prev uint64, timeout time.Duration) raft.IndexFuture {
	return r.serial(func() raft.IndexFuture { return r.Raft.DemoteVoter(id, prev, timeout) })
}

func (r *serialRaft) RemoveServer(id raft.ServerID, prev uint64, timeout time.Duration) raft.IndexFuture {
	return r.serial(func() raft.IndexFuture { return r.Raft.RemoveServer(id, prev, timeout) })
}

// autopilotLogger routes autopilot's hclog lines (promotions, demotions,
// errors) to slog with component=autopilot; its debug lines are dropped
// at slog's debug level.
func autopilotLogger(l *slog.Logger) hclog.Logger {
	il := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Off})
	il.RegisterSink(slogSink{l.With("component", "autopilot")})
	return il
}

type slogSink struct{ l *slog.Logger }

func (s slogSink) Accept(_ string, level hclog.Level, msg string, args ...any) {
	lv := slog.LevelDebug
	switch level {
	case hclog.Info:
		lv = slog.LevelInfo
	case hclog.Warn:
		lv = slog.LevelWarn
	case hclog.Error:
		lv = slog.LevelError
	}
	s.l.Log(context.Background(), lv, msg, args...)
}
