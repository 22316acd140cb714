package harness

import "time"

// Timings are the timing settings of every node of a cluster.
type Timings struct {
	Report, Lease, DownAfter, StableAfter time.Duration
	RaftHeartbeat, RaftElection           time.Duration
}

// ShortTimings make failure detection take about a second. The raft
// timeouts stay at 500ms (the leader lease is as long): shorter ones make
// leadership flap when the machine is busy (a race-enabled build on two
// cores, other test runs), and every new leader gives each node a full
// down-after again.
var ShortTimings = Timings{
	Report: 100 * time.Millisecond, Lease: 500 * time.Millisecond,
	DownAfter: 1200 * time.Millisecond, StableAfter: time.Second,
	RaftHeartbeat: 500 * time.Millisecond, RaftElection: 500 * time.Millisecond,
}

// Flags are the agent flags of the timings; a zero field is left at the
// agent's default.
func (tm Timings) Flags() []string {
	var out []string
	add := func(flag string, d time.Duration) {
		if d > 0 {
			out = append(out, flag, d.String())
		}
	}
	add("--report-interval", tm.Report)
	add("--lease", tm.Lease)
	add("--down-after", tm.DownAfter)
	add("--stable-after", tm.StableAfter)
	add("--raft-heartbeat-timeout", tm.RaftHeartbeat)
	add("--raft-election-timeout", tm.RaftElection)
	return out
}
