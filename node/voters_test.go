package node

import (
	"log/slog"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"github.com/hookswitch/hookswitch/fsm"
)

// voterSpec builds the rule's input from a compact spec: id → "L" (leader),
// then for voters "V", non-voters "N", followed by one health word: up,
// stable, down (recently), long (long down), draining (stable and
// draining), unknown (not registered).
func voterSpec(spec map[string]string) []voterInfo {
	var out []voterInfo
	for id, s := range spec {
		v := voterInfo{ID: id, Known: true}
		role, health, _ := cut(s)
		v.Voter = role == "L" || role == "V"
		v.Leader = role == "L"
		switch health {
		case "up":
			v.Up = true
		case "stable":
			v.Up, v.Stable = true, true
		case "draining":
			v.Up, v.Stable, v.Draining = true, true, true
		case "down":
		case "long":
			v.LongDown = true
		case "unknown":
			v.Known = false
		default:
			panic("bad spec " + s)
		}
		// Up longest: the lower the id's last digit, the earlier.
		if v.Up {
			v.UpSinceMs = int64(id[len(id)-1])
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b voterInfo) int { return compareSettled(a, b) })
	return out
}

func cut(s string) (string, string, bool) {
	for i := range len(s) {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func TestVotersDecide(t *testing.T) {
	tests := []struct {
		name    string
		limit   int
		spec    map[string]string
		promote []string
		demote  []string
	}{
		{name: "five healthy voters, four stable non-voters: nothing changes", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V stable", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N stable", "n7": "N stable", "n8": "N stable", "n9": "N stable"}},
		{name: "two voters long down: the two longest-up stable non-voters replace them", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V long", "n3": "V long", "n4": "V stable", "n5": "V stable",
				"n6": "N stable", "n7": "N stable", "n8": "N stable", "n9": "N stable"},
			promote: []string{"n6", "n7"}, demote: []string{"n2", "n3"}},
		{name: "a voter down but not for long: nothing yet", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V down", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N stable"}},
		{name: "a voter left: a stable non-voter fills its place", limit: 5,
			spec: map[string]string{"n1": "L stable", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N stable", "n7": "N up"},
			promote: []string{"n6"}},
		{name: "non-voters up but not stable, draining or down are never promoted", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V long", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N up", "n7": "N draining", "n8": "N down", "n9": "N unknown"}},
		{name: "a long-down voter keeps its place while nobody can take it; the other is replaced", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V long", "n3": "V long", "n4": "V stable", "n5": "V stable",
				"n6": "N stable", "n7": "N up"},
			promote: []string{"n6"}, demote: []string{"n3"}},
		{name: "small cluster, a voter long down and no non-voter: stays a voter", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V long", "n3": "V stable"}},
		{name: "below the cap with nobody missing: a stable non-voter is promoted", limit: 7,
			spec: map[string]string{"n1": "L stable", "n2": "V stable", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N stable", "n7": "N stable", "n8": "N stable"},
			promote: []string{"n6", "n7"}},
		{name: "cap lowered: the least settled voters are demoted, never the leader", limit: 3,
			spec:   map[string]string{"n9": "L up", "n1": "V stable", "n2": "V stable", "n3": "V up", "n4": "V down"},
			demote: []string{"n4", "n3"}},
		{name: "cap lowered with a long-down voter: it goes too", limit: 3,
			spec:   map[string]string{"n1": "L stable", "n2": "V stable", "n3": "V stable", "n4": "V up", "n5": "V long"},
			demote: []string{"n4", "n5"}},
		{name: "an unregistered voter (joined, registration pending) keeps its place", limit: 5,
			spec: map[string]string{"n1": "L stable", "n2": "V unknown", "n3": "V stable", "n4": "V stable", "n5": "V stable",
				"n6": "N stable"}},
		{name: "a witness voter counts toward the cap like any voter", limit: 3,
			spec: map[string]string{"n1": "L stable", "w": "V stable", "n3": "V stable", "n6": "N stable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := decideVoters(tc.limit, voterSpec(tc.spec))
			if !slices.Equal(got.Promote, tc.promote) || !slices.Equal(got.Demote, tc.demote) {
				t.Fatalf("promote %v demote %v, want promote %v demote %v", got.Promote, got.Demote, tc.promote, tc.demote)
			}
		})
	}
}

// TestVotersDecideKeepsTheCount checks the rule over every mix of five
// servers beside a stable leader (voter or not; stable, up, down, long
// down) and every cap from 1 to 5: only stable non-voters are promoted;
// only voters, never the leader, are demoted; afterwards there are at most
// `limit` voters, never fewer than before unless above the cap, and as
// many voters that are not long down as the cap and the candidates allow.
func TestVotersDecideKeepsTheCount(t *testing.T) {
	healths := []string{"stable", "up", "down", "long"}
	for limit := 1; limit <= 5; limit++ {
		for mask := range 1 << 15 {
			spec := map[string]string{"n0": "L stable"}
			for i := range 5 {
				bits := mask >> (3 * i) & 7
				role := "N"
				if bits&4 != 0 {
					role = "V"
				}
				spec["n"+string(rune('1'+i))] = role + " " + healths[bits&3]
			}
			in := voterSpec(spec)
			ch := decideVoters(limit, in)
			var before, after, usableBefore, usableAfter, candidates int
			for _, v := range in {
				promoted, demoted := slices.Contains(ch.Promote, v.ID), slices.Contains(ch.Demote, v.ID)
				switch {
				case promoted && (v.Voter || !v.Stable || !v.Up):
					t.Fatalf("limit %d %v: promotes %s (%+v)", limit, spec, v.ID, ch)
				case demoted && (!v.Voter || v.Leader):
					t.Fatalf("limit %d %v: demotes %s (%+v)", limit, spec, v.ID, ch)
				}
				if v.Voter {
					before++
					if !v.LongDown {
						usableBefore++
					}
				} else if v.Stable {
					candidates++
				}
				if (v.Voter && !demoted) || promoted {
					after++
					if !v.LongDown {
						usableAfter++
					}
				}
			}
			switch {
			case after > limit:
				t.Fatalf("limit %d %v: %d voters after %+v", limit, spec, after, ch)
			case after < min(limit, before):
				t.Fatalf("limit %d %v: %d voters after %+v, %d before", limit, spec, after, ch, before)
			case usableAfter != min(limit, usableBefore+candidates):
				t.Fatalf("limit %d %v: %d voters not long down after %+v, want %d", limit, spec, usableAfter, ch, min(limit, usableBefore+candidates))
			}
		}
	}
}

// TestVotersObserveClock: a voter is long down once this leader has seen
// it not up for down-after × 6, counted from when it first saw it so (a
// new leader starts counting at its election); it is counted again from
// zero after it was up; stable is up for stable-after.
func TestVotersObserveClock(t *testing.T) {
	const downAfter = 2 * time.Second
	n := &Node{cfg: Config{DownAfter: downAfter, StableAfter: 10 * time.Second}, id: "n1", log: slog.New(slog.DiscardHandler)}
	p := newVoterPilot(n)
	elected := time.Unix(1_000_000, 0)
	st := fsm.NewState()
	st.Nodes["n1"] = &fsm.Node{ID: "n1", Health: fsm.HealthUp, UpSinceMs: elected.Add(-time.Hour).UnixMilli()}
	// n2 has been down for an hour by the old leader's verdict.
	st.Nodes["n2"] = &fsm.Node{ID: "n2", Health: fsm.HealthDown}
	st.Nodes["n3"] = &fsm.Node{ID: "n3", Health: fsm.HealthUp, UpSinceMs: elected.Add(-5 * time.Second).UnixMilli()}
	servers := []raft.Server{{ID: "n1", Suffrage: raft.Voter}, {ID: "n2", Suffrage: raft.Voter}, {ID: "n3", Suffrage: raft.Nonvoter}, {ID: "n4", Suffrage: raft.Voter}}
	info := func(at time.Duration) map[string]voterInfo {
		out := map[string]voterInfo{}
		for id, s := range p.observe(elected.Add(at), servers, st) {
			out[string(id)] = s.Ext.(voterInfo)
		}
		return out
	}
	replace := downAfter * replaceAfterFactor
	got := info(0)
	if got["n2"].LongDown || got["n4"].LongDown {
		t.Fatalf("right after the election: %+v; want nobody long down yet", got)
	}
	if !got["n1"].Stable || got["n3"].Stable || !got["n3"].Up {
		t.Fatalf("right after the election: %+v; want n1 stable, n3 up and not stable", got)
	}
	if got["n4"].Known || got["n4"].Up {
		t.Fatalf("n4 is not registered: %+v", got["n4"])
	}
	if got := info(replace - time.Millisecond); got["n2"].LongDown {
		t.Fatalf("just before down-after × 6: n2 %+v", got["n2"])
	}
	got = info(replace)
	if !got["n2"].LongDown || !got["n4"].LongDown {
		t.Fatalf("at down-after × 6: %+v; want n2 and n4 long down", got)
	}
	if !got["n3"].Stable {
		t.Fatalf("n3 up for %s: %+v, want stable", 5*time.Second+replace, got["n3"])
	}
	// n2 comes back, then goes down again: counted from zero.
	st.Nodes["n2"] = &fsm.Node{ID: "n2", Health: fsm.HealthUp, UpSinceMs: elected.Add(replace).UnixMilli()}
	if got := info(replace + time.Second); got["n2"].LongDown || !got["n2"].Up {
		t.Fatalf("n2 up again: %+v", got["n2"])
	}
	st.Nodes["n2"] = &fsm.Node{ID: "n2", Health: fsm.HealthDown}
	if got := info(replace + 2*time.Second); got["n2"].LongDown {
		t.Fatalf("n2 down again for no time: %+v", got["n2"])
	}
	if got := info(2*replace + 2*time.Second); !got["n2"].LongDown {
		t.Fatalf("n2 down again for down-after × 6: %+v", got["n2"])
	}
	// A server that left the configuration is forgotten.
	servers = servers[:3]
	info(2*replace + 3*time.Second)
	if _, ok := p.notUpSince["n4"]; ok {
		t.Fatalf("n4 left the configuration but its clock is kept")
	}
}

// TestVotersPromoterOverAutopilotState: the promoter reads autopilot's
// state (suffrage and leader from raft, the rest from KnownServers' Ext)
// and answers with raft ids.
func TestVotersPromoterOverAutopilotState(t *testing.T) {
	p := newVoterPilot(&Node{cfg: Config{Voters: 3}, log: slog.New(slog.DiscardHandler)})
	srv := func(id string, state autopilot.RaftState, info *voterInfo) *autopilot.ServerState {
		s := &autopilot.ServerState{Server: autopilot.Server{ID: raft.ServerID(id)}, State: state}
		if info != nil {
			info.ID = id
			s.Server.Ext = *info
		}
		return s
	}
	st := &autopilot.State{Servers: map[raft.ServerID]*autopilot.ServerState{
		"n1": srv("n1", autopilot.RaftLeader, &voterInfo{Known: true, Up: true, Stable: true}),
		"n2": srv("n2", autopilot.RaftVoter, &voterInfo{Known: true, LongDown: true}),
		"n3": srv("n3", autopilot.RaftVoter, &voterInfo{Known: true, Up: true, Stable: true}),
		"n4": srv("n4", autopilot.RaftNonVoter, &voterInfo{Known: true, Up: true, Stable: true, UpSinceMs: 5}),
		"n5": srv("n5", autopilot.RaftNonVoter, &voterInfo{Known: true, Up: true, Stable: true, UpSinceMs: 1}),
		"n6": srv("n6", autopilot.RaftNonVoter, nil), // not in KnownServers' answer
	}}
	got := p.CalculatePromotionsAndDemotions(p.AutopilotConfig(), st)
	want := autopilot.RaftChanges{Promotions: []raft.ServerID{"n5"}, Demotions: []raft.ServerID{"n2"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("changes %+v, want %+v", got, want)
	}
	if cfg := p.AutopilotConfig(); cfg.CleanupDeadServers {
		t.Fatalf("autopilot must not remove dead servers: %+v", cfg)
	}
	if f := p.FilterFailedServerRemovals(nil, st, &autopilot.FailedServers{FailedVoters: []*autopilot.Server{{ID: "n2"}}}); len(f.FailedVoters)+len(f.StaleVoters)+len(f.FailedNonVoters)+len(f.StaleNonVoters) != 0 {
		t.Fatalf("removals %+v, want none", f)
	}
}
