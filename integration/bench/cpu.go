package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPU is the processor time the bench and the node used while measuring
// (from the first send to the end of the drain): on a small machine the
// bench's own generator and receiver share the cores with the node.
type CPU struct {
	WindowS float64  `json:"window_s"`
	BenchS  float64  `json:"bench_s"`
	NodeS   *float64 `json:"node_s,omitempty"` // only for a node the bench started
}

// cpuSelf is this process's user+system time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuOfPid is a process's user+system time from /proc (Linux), ok false
// when it cannot be read.
func cpuOfPid(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may contain spaces; fields after its
	// closing parenthesis start with field 3.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const clockTicks = 100 // USER_HZ: 100 on every Linux this runs on
	return time.Duration(utime+stime) * time.Second / clockTicks, true
}

// cpuMark is a point to measure CPU use from.
type cpuMark struct {
	at      time.Time
	self    time.Duration
	node    time.Duration
	nodeOK  bool
	nodePid int
}

func markCPU(nodePid int) cpuMark {
	m := cpuMark{at: time.Now(), self: cpuSelf(), nodePid: nodePid}
	if nodePid > 0 {
		m.node, m.nodeOK = cpuOfPid(nodePid)
	}
	return m
}

// since is the CPU used from m until now.
func (m cpuMark) since() *CPU {
	c := &CPU{WindowS: round3(time.Since(m.at).Seconds()), BenchS: round3((cpuSelf() - m.self).Seconds())}
	if m.nodeOK {
		if n, ok := cpuOfPid(m.nodePid); ok {
			v := round3((n - m.node).Seconds())
			c.NodeS = &v
		}
	}
	return c
}
