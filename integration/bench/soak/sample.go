package main

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/integration/harness"
	"github.com/hookswitch/hookswitch/store"
)

// sample is one node's resources at one moment.
type sample struct {
	Node  string  `json:"node"`
	At    float64 `json:"at-s"` // seconds since the load started
	Phase string  `json:"phase"`
	RSS   int64   `json:"rss-bytes"` // /proc/<pid>/status VmRSS
	// RSSAnon is RssAnon of the same file: VmRSS less the pages of mapped
	// files, which for bbolt's mmapped raft.db, events.db and peers/*.db
	// grow with the files by design. Leaks show here.
	RSSAnon    int64 `json:"rss-anon"`
	HeapInuse  int64 `json:"go-heap-inuse-bytes"` // go_memstats_heap_inuse_bytes of /metrics
	Goroutines int   `json:"goroutines"`          // go_goroutines of /metrics
	FDs        int   `json:"open-fds"`            // entries of /proc/<pid>/fd
	RaftDB     int64 `json:"raft-db-bytes"`
	EventsDB   int64 `json:"events-db-bytes"`
	PeersDB    int64 `json:"peers-db-bytes"` // peers/*.db together
	Records    int64 `json:"log-records"`    // hookswitch_event_log_records: events in events.db
	LogBytes   int64 `json:"log-bytes"`      // hookswitch_event_log_bytes: bytes of the events in events.db
	// PeerRecords and PeerLogBytes are the other nodes' log-records and
	// log-bytes of the same round: what the peers' copies hold (at most).
	PeerRecords  int64  `json:"peer-log-records"`
	PeerLogBytes int64  `json:"peer-log-bytes"`
	Snapshots    int    `json:"snapshots"`      // snapshots kept in snapshots/
	SnapIndex    uint64 `json:"snapshot-index"` // raft index of the newest
	Err          string `json:"error,omitempty"`
}

func (s sample) String() string {
	if s.Err != "" {
		return fmt.Sprintf("t=%5.0fs %-5s %s sample failed: %s", s.At, s.Phase, s.Node, s.Err)
	}
	return fmt.Sprintf("t=%5.0fs %-5s %s rss=%s (anon %s, go heap %s) goroutines=%d fds=%d raft.db=%s events.db=%s peers=%s log-records=%d snapshots=%d@%d",
		s.At, s.Phase, s.Node, mib(s.RSS), mib(s.RSSAnon), mib(s.HeapInuse), s.Goroutines, s.FDs, mib(s.RaftDB), mib(s.EventsDB), mib(s.PeersDB), s.Records, s.Snapshots, s.SnapIndex)
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }

// sampleNode reads one node's resources; a part that cannot be read is
// named in Err (the rest is still filled in).
func sampleNode(nd *harness.Node, hc *http.Client, at time.Duration, phase string) sample {
	s := sample{Node: nd.ID, At: at.Seconds(), Phase: phase}
	var errs []string
	pid := nd.Pid()
	if !nd.Running() || pid == 0 {
		s.Err = "not running"
		return s
	}
	proc := "/proc/" + strconv.Itoa(pid)
	if st, err := procStatus(proc + "/status"); err != nil {
		errs = append(errs, err.Error())
	} else {
		s.RSS, s.RSSAnon = st["VmRSS"], st["RssAnon"]
	}
	if fds, err := os.ReadDir(proc + "/fd"); err != nil {
		errs = append(errs, err.Error())
	} else {
		s.FDs = len(fds)
	}
	m, err := metrics(hc, nd.BaseURL()+"/metrics")
	if err != nil {
		errs = append(errs, err.Error())
	}
	s.Goroutines, s.Records, s.LogBytes = int(m["go_goroutines"]), int64(m["hookswitch_event_log_records"]), int64(m["hookswitch_event_log_bytes"])
	s.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	s.RaftDB = size(filepath.Join(nd.DataDir, store.RaftFile))
	s.EventsDB = size(filepath.Join(nd.DataDir, store.EventsFile))
	if peers, err := filepath.Glob(filepath.Join(nd.DataDir, "peers", "*.db")); err == nil {
		for _, p := range peers {
			s.PeersDB += size(p)
		}
	}
	s.Snapshots, s.SnapIndex = snapshots(filepath.Join(nd.DataDir, store.SnapshotsDir))
	s.Err = strings.Join(errs, "; ")
	return s
}

// procStatus reads the memory lines (VmRSS, RssAnon, RssFile…, in bytes)
// of a /proc/<pid>/status file; VmRSS must be among them.
func procStatus(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !(strings.HasPrefix(name, "Vm") || strings.HasPrefix(name, "Rss")) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return nil, fmt.Errorf("%s: odd %s line %q", path, name, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %v", path, name, err)
		}
		out[name] = kb << 10
	}
	if _, ok := out["VmRSS"]; !ok {
		return nil, fmt.Errorf("%s: no VmRSS", path)
	}
	return out, nil
}

// metrics reads the unlabelled samples of a Prometheus text page.
func metrics(hc *http.Client, url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out, sc.Err()
}

// size is a file's size (0 if it is missing).
func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// snapshots counts the raft snapshots in dir (named term-index-millis)
// and returns the newest one's index.
func snapshots(dir string) (n int, index uint64) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		f := strings.Split(e.Name(), "-")
		if !e.IsDir() || len(f) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		i, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		n++
		index = max(index, i)
	}
	return n, index
}

// ---- verdicts ----

// verdict says whether one series of one node stayed within its bound.
type verdict struct {
	Node   string  `json:"node"`
	Series string  `json:"series"`
	First  float64 `json:"first-third"` // mean of the first third (after warm-up)
	Last   float64 `json:"last-third"`  // mean of the last third
	Ratio  float64 `json:"ratio"`       // Last / First
	Unit   string  `json:"unit"`        // of First and Last: bytes, B/event or count
	Bound  string  `json:"bound"`
	Judged bool    `json:"judged"`
	OK     bool    `json:"ok"`
	Note   string  `json:"note,omitempty"`
}

func (v verdict) String() string {
	res := "ok"
	switch {
	case !v.Judged:
		res = "not judged"
	case !v.OK:
		res = "GREW"
	}
	f, l, unit := v.First, v.Last, v.Unit
	if unit == "bytes" {
		f, l, unit = f/(1<<20), l/(1<<20), "MiB"
	}
	s := fmt.Sprintf("%s %-15s first third %9.1f  last third %9.1f %-7s ratio %5.2f  bound: %s  → %s",
		v.Node, v.Series, f, l, unit, v.Ratio, v.Bound, res)
	if v.Note != "" {
		s += " (" + v.Note + ")"
	}
	return s
}

// thirds returns the means of the first and the last third of xs.
func thirds(xs []float64) (first, last float64) {
	n := len(xs) / 3
	return mean(xs[:n]), mean(xs[len(xs)-n:])
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t / float64(len(xs))
}

// flat judges a series: the last third's mean may be at most factor times
// the first third's plus slack. It needs at least 3 values.
func flat(node, name string, xs []float64, factor, slack float64, unit string) verdict {
	v := verdict{Node: node, Series: name, Unit: "count", Bound: fmt.Sprintf("last ≤ %.2f × first + %g", factor, slack)}
	if unit == " B" {
		v.Unit = "bytes"
		v.Bound = fmt.Sprintf("last ≤ %.2f × first + %s", factor, mib(int64(slack)))
	}
	if len(xs) < 3 {
		v.Note = fmt.Sprintf("%d samples after warm-up; need 3", len(xs))
		return v
	}
	v.First, v.Last = thirds(xs)
	if v.First > 0 {
		v.Ratio = v.Last / v.First
	}
	v.Judged = true
	v.OK = v.Last <= factor*v.First+slack
	return v
}

// proportional judges a log file that grows with its content: at every
// sample the file may be at most fileFactor times the bytes of the events
// it holds plus fileSlack. First and Last are the file's bytes per event
// (for the record: it falls while the file fills its first allocation).
// f returns the file size, the bytes of the events and their number.
func proportional(node, name string, ss []sample, f func(s sample) (file, content, events float64)) verdict {
	v := verdict{Node: node, Series: name, Unit: "B/event", Bound: fmt.Sprintf("file ≤ %g × its events' bytes + %s at every sample", fileFactor, mib(fileSlack)),
		Note: "grows with ingest by design; shown: file bytes per event"}
	var per []float64
	worst := 0.0
	for _, s := range ss {
		file, content, events := f(s)
		if events > 0 {
			per = append(per, file/events)
		}
		worst = max(worst, file/(fileFactor*content+fileSlack))
	}
	if len(per) < 3 {
		v.Note = fmt.Sprintf("%d samples with events after warm-up; need 3", len(per))
		return v
	}
	v.First, v.Last = thirds(per)
	if v.First > 0 {
		v.Ratio = v.Last / v.First
	}
	v.Judged, v.OK = true, worst <= 1
	return v
}

// Bounds of the series (see docs/reliability.md, "Soak").
const (
	rssFactor, rssSlack         = 1.5, 16 << 20 // Go's heap target moves with GC; a leak keeps climbing
	goroutineFactor, goroutineS = 1.25, 20      // in-flight POSTs and hung ones come and go
	fdFactor, fdSlack           = 1.25, 10
	// A bbolt file holds its events with page overhead and grows in
	// 16 MiB steps (the first allocation is 16 MiB).
	fileFactor, fileSlack = 2.0, 32 << 20
	raftFactor            = 1.25 // once compaction runs, freed pages are reused
	// raftSnapshotsNeeded is how many snapshots must have been taken
	// before the last third for raft.db to be judged: hashicorp/raft
	// truncates its log only from the second snapshot on (it keeps
	// TrailingLogs = 10240 entries, and snapshots every SnapshotThreshold
	// = 8192 new ones).
	raftSnapshotsNeeded = 2
)

// judge returns the verdicts of one node's load-phase samples after
// warm-up (all: every sample of the node, for the snapshot history).
func judge(node string, all []sample, warmup time.Duration) []verdict {
	var ss []sample
	for _, s := range all {
		if s.Phase == "load" && s.At >= warmup.Seconds() && s.Err == "" {
			ss = append(ss, s)
		}
	}
	col := func(f func(s sample) float64) []float64 {
		out := make([]float64, 0, len(ss))
		for _, s := range ss {
			out = append(out, f(s))
		}
		return out
	}
	rss := flat(node, "rss", col(func(s sample) float64 { return float64(s.RSS) }), rssFactor, rssSlack, " B")
	rss.Judged, rss.OK = false, false
	if rss.Note == "" {
		rss.Note = "for the record: includes the mmapped db files, which grow by design; rss-anon is judged"
	}
	heap := flat(node, "go-heap", col(func(s sample) float64 { return float64(s.HeapInuse) }), rssFactor, rssSlack, " B")
	heap.Judged, heap.OK = false, false
	if heap.Note == "" {
		heap.Note = "for the record: swings with each GC cycle; to read beside rss-anon"
	}
	out := []verdict{rss, heap,
		flat(node, "rss-anon", col(func(s sample) float64 { return float64(s.RSSAnon) }), rssFactor, rssSlack, " B"),
		flat(node, "goroutines", col(func(s sample) float64 { return float64(s.Goroutines) }), goroutineFactor, goroutineS, ""),
		flat(node, "open-fds", col(func(s sample) float64 { return float64(s.FDs) }), fdFactor, fdSlack, ""),
	}
	// events.db grows with ingest by design (72h retention): what must
	// hold is that the file stays proportional to the events it holds.
	out = append(out,
		proportional(node, "events.db", ss, func(s sample) (float64, float64, float64) {
			return float64(s.EventsDB), float64(s.LogBytes), float64(s.Records)
		}),
		proportional(node, "peers/*.db", ss, func(s sample) (float64, float64, float64) {
			return float64(s.PeersDB), float64(s.PeerLogBytes), float64(s.PeerRecords)
		}))

	// raft.db: bounded once raft compacts its log.
	v := verdict{Node: node, Series: "raft.db", Unit: "bytes", Bound: fmt.Sprintf("last-third max ≤ %.2f × max before it, once raft has taken %d snapshots", raftFactor, raftSnapshotsNeeded)}
	if len(ss) >= 3 {
		lastStart := ss[len(ss)-len(ss)/3].At
		raft := col(func(s sample) float64 { return float64(s.RaftDB) })
		v.First, v.Last = thirds(raft)
		if v.First > 0 {
			v.Ratio = v.Last / v.First
		}
		taken, prev := 0, uint64(0)
		for _, s := range all {
			if s.At < lastStart && s.SnapIndex > prev {
				taken++
				prev = s.SnapIndex
			}
		}
		before, after := 0.0, 0.0
		for _, s := range ss {
			if s.At < lastStart {
				before = max(before, float64(s.RaftDB))
			} else {
				after = max(after, float64(s.RaftDB))
			}
		}
		if taken >= raftSnapshotsNeeded {
			v.Judged, v.OK = true, after <= raftFactor*before
			v.Note = fmt.Sprintf("%d snapshots before the last third; max %s before, %s in it", taken, mib(int64(before)), mib(int64(after)))
		} else {
			first, last := ss[0], ss[len(ss)-1]
			rate := float64(last.RaftDB-first.RaftDB) / math.Max(last.At-first.At, 1) * 60
			v.Note = fmt.Sprintf("%d snapshots before the last third, need %d: the run is too short for raft to compact its log; grew %s/min", taken, raftSnapshotsNeeded, mib(int64(rate)))
		}
	} else {
		v.Note = fmt.Sprintf("%d samples after warm-up; need 3", len(ss))
	}
	return append(out, v)
}
