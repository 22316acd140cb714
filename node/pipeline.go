package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/engine"
	"github.com/hookswitch/hookswitch/dispatch/hub"
	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/store"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// pipeline is the event path of one node: the local event log, the
// delivery engine, and the loops that feed the engine the subscriptions
// this node sends, commit its reports and trim the log.
type pipeline struct {
	n      *Node
	log    *slog.Logger
	events *eventlog.Log
	engine *engine.Engine
	poster *webhook.Poster
	wsHub  *hub.Hub // websocket fan-out

	mesh *mesh
	// sources are the PBX sources (sources.go), appending to events.
	sources *sourceSet

	stopEngine, stopLoops context.CancelFunc
	engineWG, loopsWG     sync.WaitGroup
	// abortPosts cancels the POSTs still in flight (stop's deadline).
	abortPosts context.CancelFunc

	// leaseFrom is when the last committed report was sent (unix ns, local
	// clock): this node sends only while it is less than lease ago.
	leaseFrom atomic.Int64
	fenced    atomic.Bool

	mu       sync.Mutex
	inflight *fsm.NodeReport // sent, not known to be committed: resent as is
	// inflightSent is when inflight was first sent.
	inflightSent time.Time
	dropped      map[string]uint64 // dropped-count deltas from trimming
	renewed      chan struct{}     // closed when a report commits
	lastSeq      uint64
	reports      uint64 // reports built
}

// fullReportEvery: every this many reports, the cursors of idle
// subscriptions are committed too (others are in every report).
const fullReportEvery = 10

func toPrefixes(nets []*net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(nets))
	for _, n := range nets {
		addr, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, _ := n.Mask.Size()
		out = append(out, netip.PrefixFrom(addr.Unmap(), ones))
	}
	return out
}

func newPipeline(n *Node, version string, logger *slog.Logger) (*pipeline, error) {
	events, err := eventlog.Open(eventlog.Options{
		Path:           filepath.Join(n.cfg.DataDir, store.EventsFile),
		Retention:      n.cfg.Retention,
		RetentionBytes: n.cfg.RetentionBytes,
		Logger:         logger,
	})
	if err != nil {
		return nil, fmt.Errorf("node: open event log: %w", err)
	}
	poster := webhook.NewPoster(webhook.PosterOptions{
		Version: version,
		Guard:   n.cfg.postURLGuard(),
		Logger:  logger,
	})
	postsCtx, abortPosts := context.WithCancel(context.Background())
	eng := engine.New(engine.Options{Poster: poster, Logger: logger, SuspendAfter: n.cfg.SuspendAfter,
		Worker: webhook.WorkerOptions{InFlight: postsCtx}, Stats: n.subStats, OnPost: n.metrics.onPost})
	eng.AddSource(n.id, events)
	wsHub := hub.New(hub.Options{Logger: logger})
	wsHub.AddSource(n.id, events)
	p := &pipeline{
		n: n, log: logger.With("component", "pipeline", "node", n.id),
		events: events, engine: eng, poster: poster, wsHub: wsHub, dropped: map[string]uint64{},
		renewed: make(chan struct{}), abortPosts: abortPosts,
	}
	p.mesh = newMesh(p)
	specs, _ := ParseSources(n.cfg.Sources) // checked by Config.Validate
	p.sources = newSourceSet(specs, events, logger)
	if err := p.mesh.openExisting(); err != nil {
		abortPosts()
		p.mesh.close()
		events.Close()
		return nil, err
	}
	return p, nil
}

// start runs the engine and the pipeline's loops until stop.
func (p *pipeline) start() {
	ectx, ecancel := context.WithCancel(context.Background())
	lctx, lcancel := context.WithCancel(context.Background())
	p.stopEngine, p.stopLoops = ecancel, lcancel
	p.engineWG.Add(1)
	go func() { defer p.engineWG.Done(); p.engine.Run(ectx) }()
	p.engineWG.Add(1)
	go func() { defer p.engineWG.Done(); p.wsHub.Run(ectx) }()
	p.loopsWG.Add(4)
	go func() { defer p.loopsWG.Done(); p.mesh.loop(lctx) }()
	go func() { defer p.loopsWG.Done(); p.syncLoop(lctx) }()
	go func() { defer p.loopsWG.Done(); p.reportLoop(lctx) }()
	go func() { defer p.loopsWG.Done(); p.trimLoop(lctx) }()
	p.sources.start()
}

// stop ends delivery, stops the loops, commits a final report while raft
// still runs, and closes the event log. POSTs in flight run to their end, or
// until ctx is done: then they are cancelled, their events count as not
// delivered, and the final report's cursors stay before them.
func (p *pipeline) stop(ctx context.Context, report bool) error {
	p.sources.stop() // no new events from the PBX; what they queued is appended
	p.stopEngine()
	unwatch := context.AfterFunc(ctx, p.abortPosts)
	p.engineWG.Wait()
	unwatch()
	p.abortPosts()
	p.stopLoops()
	p.loopsWG.Wait()
	if report {
		p.finalReport()
	}
	p.mesh.close()
	return p.events.Close()
}

// sends reports whether this node sends sub now.
func (p *pipeline) sends(sub *fsm.Subscription, nowMs int64) bool {
	switch {
	case sub.Owner != p.n.id, sub.Paused, sub.Status == fsm.StatusSuspended:
		return false
	case sub.ExpiresMs != 0 && sub.ExpiresMs <= nowMs:
		return false
	}
	return !p.n.cfg.Witness
}

// syncLoop keeps the engine's set of subscriptions equal to those the
// replicated state says this node sends, and fences the node: when its last
// committed report is lease old, it sends nothing until the next one
// commits (by then the leader may have given its subscriptions away).
func (p *pipeline) syncLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		changed := p.n.fsm.Changed()
		want, leaseLeft := p.wanted()
		p.engine.Sync(want)
		wait := p.n.cfg.ReportInterval // expiry is a matter of time, not of a change
		if leaseLeft > 0 && leaseLeft < wait {
			wait = leaseLeft
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-p.leaseRenewed():
		case <-t.C:
		}
	}
}

// leaseRenewed returns a channel closed when the next report commits.
func (p *pipeline) leaseRenewed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.renewed
}

// wanted returns what this node sends now and how long its lease lasts.
func (p *pipeline) wanted() ([]engine.Sub, time.Duration) {
	now := time.Now()
	from := p.leaseFrom.Load()
	if from == 0 {
		// No report has committed since start: the node has not had a
		// lease yet, which is no lapse to warn about.
		p.fenced.Store(true)
		return nil, 0
	}
	left := p.n.cfg.Lease - now.Sub(time.Unix(0, from))
	if left <= 0 {
		if !p.fenced.Swap(true) {
			p.log.Warn("lease expired: not sending until a report commits", "lease", p.n.cfg.Lease)
		}
		return nil, 0
	}
	if p.fenced.Swap(false) {
		p.log.Info("lease renewed: sending again")
	}
	nowMs := now.UnixMilli()
	var out []engine.Sub
	p.n.fsm.Read(func(st *fsm.State) {
		for _, s := range st.Subs {
			if p.sends(s, nowMs) {
				out = append(out, engineSub(s))
			}
		}
	})
	return out, left
}

func matchSub(s *fsm.Subscription) match.Sub {
	m := match.Sub{ID: s.ID, Model: s.Model, Reseller: s.Reseller, Domain: s.Domain, User: s.User}
	for _, f := range s.Filters {
		m.Filters = append(m.Filters, match.Filter{Property: f.Property, Value: f.Value})
	}
	return m
}

func engineSub(s *fsm.Subscription) engine.Sub {
	es := engine.Sub{
		Match: matchSub(s),
		Target: webhook.Target{
			SubID: s.ID, URL: s.PostURL, Secret: s.Secret, Encoding: s.Encoding,
			BatchMax: s.BatchMax, Timeout: time.Duration(s.TimeoutMs) * time.Millisecond,
			OldSecret: s.PrevSecret, OldSecretUntil: time.UnixMilli(s.PrevSecretUntilMs),
		},
		Generation: s.Generation,
		StartMs:    s.StartMs,
		Cursors:    map[string]engine.Cursor{},
	}
	for node, c := range s.Cursors {
		es.Cursors[node] = engine.Cursor{Node: c.Node, Incarnation: c.Incarnation, Seq: c.Seq}
	}
	if s.FailingSinceMs != 0 {
		es.FailingSince = time.UnixMilli(s.FailingSinceMs)
	}
	es.Status = runStatus(s)
	return es
}

// runStatus is the status a run of s starts with: the replicated one while
// it is a delivery status, else (waiting for its home node, or unset) what
// the replicated counters say: pending when it never posted, error when
// its last attempt failed, else active.
func runStatus(s *fsm.Subscription) webhook.State {
	switch s.Status {
	case fsm.StatusPending, fsm.StatusActive, fsm.StatusError:
		return webhook.State(s.Status)
	}
	c := &s.Counters
	switch {
	case c.LastPostMs == 0 && c.LastErrorMs == 0:
		return webhook.StatePending
	case c.LastErrorMs > c.LastPostMs:
		return webhook.StateError
	}
	return webhook.StateActive
}

// reportLoop commits a node report every report-interval.
func (p *pipeline) reportLoop(ctx context.Context) {
	t := time.NewTicker(p.n.cfg.ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, p.reportTimeout())
			// Read before the report: the registration may apply just
			// after the report that it would have let through.
			registered := p.registered()
			if err := p.report(rctx); err != nil && ctx.Err() == nil {
				if errors.Is(err, fsm.ErrNotFound) && !registered {
					// Before this node's registration commits (just
					// after a bootstrap or a join), a report has nothing
					// to attach to: no fault, it is sent again.
					p.log.Debug("node report before registration; it will be sent again")
					cancel()
					continue
				}
				p.log.Warn("node report not committed; it will be sent again", "err", err)
			}
			cancel()
		}
	}
}

// reportTimeout bounds one attempt to commit a report: four report
// intervals, and never less than a lease. On a busy machine a commit can
// take longer than a few report intervals; cutting the wait short does not
// stop the commit, it only sends the same report again and loads raft
// further, while a report that commits within a lease still renews it.
func (p *pipeline) reportTimeout() time.Duration {
	return max(p.n.cfg.ReportInterval*4, p.n.cfg.Lease)
}

// finalReport commits what the last report did not carry, on shutdown.
func (p *pipeline) finalReport() {
	ctx, cancel := context.WithTimeout(context.Background(), finalReportTimeout)
	defer cancel()
	for i := 0; i < 2; i++ { // the in-flight one, then the last deltas
		if err := p.report(ctx); err != nil {
			p.log.Warn("final node report not committed", "err", err)
			return
		}
	}
}

// finalReportTimeout bounds the report committed on shutdown.
const finalReportTimeout = 5 * time.Second

// report sends the in-flight report again, or builds a new one, and
// commits it. A report keeps its sequence number until it is committed, so
// a retry after a lost answer is applied once.
func (p *pipeline) report(ctx context.Context) error {
	p.mu.Lock()
	r := p.inflight
	if r == nil {
		r = p.buildReport()
		p.inflight = r
		// The lease runs from the report's first send: a retry may find
		// it committed long ago, and the leader counts from then.
		p.inflightSent = time.Now()
	}
	sent := p.inflightSent
	p.mu.Unlock()
	res, err := p.n.Apply(ctx, r)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return err
	}
	// The lease counts only once this node's own state has applied the
	// report, and so everything committed before it (a reassignment).
	for {
		changed := p.n.fsm.Changed()
		var applied bool
		p.n.fsm.Read(func(st *fsm.State) {
			nd, ok := st.Nodes[p.n.id]
			applied = ok && nd.LastReportSeq >= r.Seq
		})
		if applied {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
	p.leaseFrom.Store(sent.UnixNano())
	p.mu.Lock()
	p.inflight = nil
	close(p.renewed)
	p.renewed = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// buildReport gathers the engine's reports and the trim deltas. The
// sequence number is above the last committed one and the previous one,
// and otherwise the wall clock in microseconds, so it keeps increasing
// across restarts. Called with p.mu held.
func (p *pipeline) buildReport() *fsm.NodeReport {
	var committed uint64
	p.n.fsm.Read(func(st *fsm.State) {
		if nd, ok := st.Nodes[p.n.id]; ok {
			committed = nd.LastReportSeq
		}
	})
	seq := max(committed+1, p.lastSeq+1, uint64(time.Now().UnixMicro()))
	p.lastSeq = seq
	r := &fsm.NodeReport{Node: p.n.id, Seq: seq, AtMs: time.Now().UnixMilli()}
	p.reports++
	for _, er := range p.engine.Report(p.reports%fullReportEvery == 0) {
		sr := fsm.SubReport{
			ID: er.ID, Generation: er.Generation, Status: string(er.Status),
			Posts: er.Posts, Errors: er.Errors, Events: er.Events, Lag: er.Lag,
			LastPostMs: er.LastPostMs, LastError: er.LastError, LastErrorMs: er.LastErrorMs,
			FailingSinceMs: er.FailingSinceMs, Dropped: p.dropped[er.ID],
		}
		delete(p.dropped, er.ID)
		for _, c := range er.Cursors {
			sr.Cursors = append(sr.Cursors, fsm.Cursor{Node: c.Node, Incarnation: c.Incarnation, Seq: c.Seq})
		}
		r.Subs = append(r.Subs, sr)
	}
	for id, n := range p.dropped {
		// Dropped events of subscriptions another node sends (or none).
		r.Subs = append(r.Subs, fsm.SubReport{ID: id, Dropped: n})
		delete(p.dropped, id)
	}
	return r
}

// trimLoop enforces the local log's retention (age and size) and counts
// the events it drops before a subscription consumed them.
func (p *pipeline) trimLoop(ctx context.Context) {
	t := time.NewTicker(p.n.cfg.TrimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.trim(); err != nil {
				p.log.Warn("trimming the event log failed", "err", err)
			}
			p.mesh.trim()
		}
	}
}

// trim applies retention. Events stay for the whole retention even once
// every subscription has consumed them, so that replay and websocket
// ?since= can serve them (docs/decisions.md); the committed cursors only
// decide which dropped events are counted as dropped unread.
func (p *pipeline) trim() error {
	inc := p.events.Incarnation()
	type pos struct {
		seq     uint64 // consumed up to here
		startMs int64  // no cursor yet: starts at this time
		hasSeq  bool
		m       match.Sub
	}
	var subs []pos
	p.n.fsm.Read(func(st *fsm.State) {
		for _, s := range st.Subs {
			c, ok := s.Cursors[p.n.id]
			ok = ok && c.Incarnation == inc
			subs = append(subs, pos{seq: c.Seq, hasSeq: ok, startMs: s.StartMs, m: matchSub(s)})
		}
	})
	// Positions of subscriptions without a cursor (new ones, usually few),
	// looked up once per start time.
	startSeq := map[int64]uint64{}
	for i := range subs {
		s := &subs[i]
		if s.hasSeq {
			continue
		}
		seq, ok := startSeq[s.startMs]
		if !ok {
			var err error
			if seq, err = p.events.SeqAtOrAfter(time.UnixMilli(s.startMs)); err != nil {
				return err
			}
			startSeq[s.startMs] = seq
		}
		s.seq = seq - 1
	}
	var ix *match.Index
	var hits []match.Hit
	consumed := map[string]uint64{}
	st, err := p.events.Trim(p.events.FirstSeq(), func(recs []eventlog.Record) {
		if ix == nil {
			ix = match.NewIndex()
			for _, s := range subs {
				_ = ix.Upsert(s.m)
				consumed[s.m.ID] = s.seq
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		for i := range recs {
			ev := &dispatch.Event{ID: dispatch.EventID(inc, recs[i].Seq), Node: p.n.id, Seq: recs[i].Seq,
				IngestMs: recs[i].IngestMs, Model: recs[i].Model, Body: recs[i].Body}
			hits = ix.Match(ev, hits[:0])
			for _, h := range hits {
				if recs[i].Seq > consumed[h.SubID] {
					p.dropped[h.SubID]++
				}
			}
		}
	})
	if st.Dropped > 0 {
		// Events still queued in memory for a subscription must not be
		// delivered after they were counted as dropped.
		p.engine.Trimmed(p.n.id)
	}
	if err != nil && !errors.Is(err, eventlog.ErrClosed) {
		return err
	}
	return nil
}

// TestDelivery implements httpapi.Tester: one synthetic event, signed and
// encoded like any other, posted now; the receiver's answer is returned.
func (n *Node) TestDelivery(ctx context.Context, sub *fsm.Subscription) httpapi.TestResult {
	model := sub.Model
	if model == "*" {
		model = "test"
	}
	body := []byte(`{"model":` + jsonString(model) + `,"test":"yes","message":"hookswitch test event"`)
	for _, f := range [][2]string{{"reseller", sub.Reseller}, {"domain", sub.Domain}, {"user", sub.User}} {
		if f[1] != "*" {
			body = append(body, `,"`+f[0]+`":`+jsonString(f[1])...)
		}
	}
	body = append(body, '}')
	now := time.Now()
	ev := &dispatch.Event{ID: "test-" + strconv.FormatInt(now.UnixNano(), 36), Node: n.id, IngestMs: now.UnixMilli(), Model: model, Body: body}
	evs := []*dispatch.Event{ev}
	es := engineSub(sub)
	payloads, err := webhook.Encode(sub.Encoding, evs)
	if err != nil {
		return httpapi.TestResult{EventID: ev.ID, Error: err.Error()}
	}
	r := n.pipe.poster.Post(ctx, es.Target, webhook.BatchID(sub.ID, evs), payloads[0].Body, payloads[0].ContentType)
	out := httpapi.TestResult{OK: r.OK(), Status: r.Status, DurationMs: r.Duration.Milliseconds(), Response: r.BodySnippet, EventID: ev.ID}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return out
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// registered tells whether this node's registration has applied here.
func (p *pipeline) registered() (ok bool) {
	p.n.fsm.Read(func(st *fsm.State) { _, ok = st.Nodes[p.n.id] })
	return ok
}

// postURLGuard is the post-url guard of post-url-deny and post-url-allow:
// the one set of rules for the connect-time check (the poster) and the
// literal-address check at create (the API).
func (c *Config) postURLGuard() *webhook.Guard {
	return webhook.NewGuard(toPrefixes(c.PostURLDeny), toPrefixes(c.PostURLAllow))
}
