package node

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
)

// OtherSubsLabel is the sub label value under which the per-subscription
// series of the subscriptions beyond metrics-max-subs are summed.
// Subscription ids never contain parentheses, so it names none of them.
const OtherSubsLabel = "(other)"

// Histogram buckets, in seconds.
var (
	// ingestAckBuckets: an ingest request is answered once its events are
	// durable (one group-commit fsync), usually within milliseconds.
	ingestAckBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// deliveryBuckets: a webhook POST, from sending it to the end of
	// reading the answer; receivers run from sub-millisecond to the
	// poster's timeout.
	deliveryBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// nodeMetrics holds the series that are counted as things happen (the
// rest are read from the components when scraped, in metricsHandler). A
// nil *nodeMetrics ignores everything, so hooks need no check.
type nodeMetrics struct {
	ingestRequests *prometheus.CounterVec // code
	ingestAck      prometheus.Histogram
	reassignments  prometheus.Counter
	health         *prometheus.CounterVec // health: up, down
	subs           *subSeries
}

func newNodeMetrics(maxSubs int) *nodeMetrics {
	m := &nodeMetrics{
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookswitch_ingest_requests_total",
			Help: "Ingest requests (POST /v1/events) answered, by HTTP status code.",
		}, []string{"code"}),
		ingestAck: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hookswitch_ingest_ack_seconds",
			Help:    "Time from an ingest request's arrival to its 2xx answer (its events are durable then).",
			Buckets: ingestAckBuckets,
		}),
		reassignments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hookswitch_reassignments_total",
			Help: "Subscription moves this node committed while it led the cluster.",
		}),
		health: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookswitch_node_health_transitions_total",
			Help: "Node health changes this node committed while it led the cluster, by the new health.",
		}, []string{"health"}),
		subs: newSubSeries(maxSubs),
	}
	// Both health series exist from the start, at 0.
	m.health.WithLabelValues(fsm.HealthUp)
	m.health.WithLabelValues(fsm.HealthDown)
	return m
}

// instrumentIngest counts the ingest requests by status and observes the
// acknowledgement latency of the accepted ones.
func (m *nodeMetrics) instrumentIngest(h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	// The usual answer's counter, looked up once (ingest is the hot path).
	accepted := m.ingestRequests.WithLabelValues(strconv.Itoa(http.StatusAccepted))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if code == http.StatusAccepted {
			accepted.Inc()
		} else {
			m.ingestRequests.WithLabelValues(strconv.Itoa(code)).Inc()
		}
		if code >= 200 && code < 300 {
			m.ingestAck.Observe(time.Since(start).Seconds())
		}
	})
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// onPost is the engine's per-POST hook (engine.Options.OnPost).
func (m *nodeMetrics) onPost(subID string, n int, r webhook.Result) {
	if m == nil {
		return
	}
	m.subs.post(subID, n, r)
}

// healthChanged counts one committed health change.
func (m *nodeMetrics) healthChanged(up bool) {
	if m == nil {
		return
	}
	h := fsm.HealthDown
	if up {
		h = fsm.HealthUp
	}
	m.health.WithLabelValues(h).Inc()
}

// reassigned counts committed subscription moves.
func (m *nodeMetrics) reassigned(moves int) {
	if m == nil {
		return
	}
	m.reassignments.Add(float64(moves))
}

// subSeries are the per-subscription series. The first max subscriptions
// seen get a sub label of their own; later ones are summed under
// OtherSubsLabel, so a node with many subscriptions does not flood
// Prometheus. A subscription that no longer exists frees its label when
// the metrics are next scraped.
type subSeries struct {
	max int

	mu     sync.Mutex
	labels map[string]string // subscription id → its sub label
	own    int               // labels that are an id

	delivered *prometheus.CounterVec
	failed    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	lagDesc   *prometheus.Desc
}

func newSubSeries(max int) *subSeries {
	return &subSeries{
		max:    max,
		labels: map[string]string{},
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookswitch_subscription_delivered_events_total",
			Help: "Events this node delivered to a subscription's post-url (successful POSTs).",
		}, []string{"sub"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookswitch_subscription_failed_posts_total",
			Help: "Failed POST attempts to a subscription's post-url (each retry counts).",
		}, []string{"sub"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hookswitch_subscription_delivery_seconds",
			Help:    "Duration of a subscription's webhook POSTs, successful or not, from sending to the end of the answer.",
			Buckets: deliveryBuckets,
		}, []string{"sub"}),
		lagDesc: prometheus.NewDesc("hookswitch_subscription_lag_events",
			"Events a subscription this node sends has still to deliver or pass over.", []string{"sub"}, nil),
	}
}

// label returns id's sub label, assigning one when id is new. mu is held.
func (s *subSeries) label(id string) string {
	if l, ok := s.labels[id]; ok {
		return l
	}
	l := OtherSubsLabel
	if s.own < s.max {
		l = id
		s.own++
	}
	s.labels[id] = l
	return l
}

func (s *subSeries) post(id string, n int, r webhook.Result) {
	// Under mu, so that prune cannot drop the series between the label
	// and the update (which would leave an orphan series behind).
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.label(id)
	if r.OK() {
		s.delivered.WithLabelValues(l).Add(float64(max(n, 0)))
	} else {
		s.failed.WithLabelValues(l).Inc()
	}
	s.latency.WithLabelValues(l).Observe(r.Duration.Seconds())
}

// prune forgets the subscriptions not in exists, dropping their series.
func (s *subSeries) prune(exists map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, l := range s.labels {
		if exists[id] {
			continue
		}
		delete(s.labels, id)
		if l == id {
			s.own--
			s.delivered.DeleteLabelValues(l)
			s.failed.DeleteLabelValues(l)
			s.latency.DeleteLabelValues(l)
		}
	}
}

// subCollector collects the per-subscription series: it prunes deleted
// subscriptions from the replicated state, then reads the lag of the ones
// this node sends from the engine.
type subCollector struct{ n *Node }

func (c subCollector) Describe(ch chan<- *prometheus.Desc) {
	s := c.n.metrics.subs
	s.delivered.Describe(ch)
	s.failed.Describe(ch)
	s.latency.Describe(ch)
	ch <- s.lagDesc
}

func (c subCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.n.metrics.subs
	exists := map[string]bool{}
	var mine []string
	c.n.fsm.Read(func(st *fsm.State) {
		for id, sub := range st.Subs {
			exists[id] = true
			if sub.Owner == c.n.id && !sub.Paused {
				mine = append(mine, id)
			}
		}
	})
	s.prune(exists)
	// The engine's lock is taken without s.mu held: the engine calls
	// onPost (which takes s.mu) with its own lock held.
	lags := make(map[string]uint64, len(mine))
	for _, id := range mine {
		if r, ok := c.n.pipe.engine.Status(id); ok {
			lags[id] = r.Lag
		}
	}
	byLabel := map[string]uint64{}
	s.mu.Lock()
	for id, lag := range lags {
		byLabel[s.label(id)] += lag
	}
	s.mu.Unlock()
	for l, lag := range byLabel {
		ch <- prometheus.MustNewConstMetric(s.lagDesc, prometheus.GaugeValue, float64(lag), l)
	}
	s.delivered.Collect(ch)
	s.failed.Collect(ch)
	s.latency.Collect(ch)
}

// metricsHandler serves /metrics: the node's counters in Prometheus form.
// Most are read from the components when scraped (nothing is counted
// twice); nodeMetrics holds those counted as things happen. It has no
// secrets in it; the mount point decides who may read it. docs/metrics.md
// lists every series.
func (n *Node) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := n.metrics
	reg.MustRegister(m.ingestRequests, m.ingestAck, m.reassignments, m.health, subCollector{n})
	p := n.pipe
	counter := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge := func(name, help string, f func() float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter("hookswitch_ingest_events_total", "Events accepted (durable) on this node.", func() float64 { return float64(p.events.LastSeq()) })
	counter("hookswitch_ingest_commits_total", "Group-commit transactions (fsyncs) of the event log since start.", func() float64 { return float64(p.events.Stats().Commits) })
	gauge("hookswitch_event_log_records", "Events stored in the local event log.", func() float64 { return float64(p.events.Stats().Records) })
	gauge("hookswitch_event_log_bytes", "Bytes stored in the local event log.", func() float64 { return float64(p.events.Stats().Bytes) })
	gauge("hookswitch_event_log_first_seq", "Lowest sequence number stored in the local event log (last seq + 1 when empty).", func() float64 { return float64(p.events.Stats().FirstSeq) })
	gauge("hookswitch_event_log_last_seq", "Highest sequence number assigned in the local event log.", func() float64 { return float64(p.events.Stats().LastSeq) })
	counter("hookswitch_webhook_posts_total", "Successful webhook POSTs since start.", func() float64 { return float64(p.engine.Totals().Posts) })
	counter("hookswitch_webhook_errors_total", "Failed webhook POST attempts since start.", func() float64 { return float64(p.engine.Totals().Errors) })
	counter("hookswitch_webhook_events_total", "Events delivered to webhooks since start.", func() float64 { return float64(p.engine.Totals().Events) })
	gauge("hookswitch_subscriptions_sending", "Subscriptions this node sends now.", func() float64 { return float64(p.engine.Totals().Running) })
	gauge("hookswitch_websocket_connections", "Websocket connections open now.", func() float64 { return float64(p.wsHub.Stats().Connections) })
	counter("hookswitch_websocket_connections_total", "Websocket connections opened since start.", func() float64 { return float64(p.wsHub.Stats().Opened) })
	counter("hookswitch_websocket_events_sent_total", "Events sent to websocket connections since start.", func() float64 { return float64(p.wsHub.Stats().Sent) })
	counter("hookswitch_websocket_slow_disconnects_total", "Websocket connections closed for not keeping up (drops).", func() float64 { return float64(p.wsHub.Stats().SlowDisconnects) })
	gauge("hookswitch_raft_leader", "1 when this node is the raft leader.", func() float64 {
		if n.raft.State() == raft.Leader {
			return 1
		}
		return 0
	})
	gauge("hookswitch_raft_term", "This node's current raft term.", func() float64 { return float64(n.raft.CurrentTerm()) })
	gauge("hookswitch_raft_commit_index", "Highest raft log index known committed.", func() float64 { return float64(n.raft.CommitIndex()) })
	gauge("hookswitch_raft_applied_index", "Highest raft log index applied to the state machine.", func() float64 { return float64(n.raft.AppliedIndex()) })
	gauge("hookswitch_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader, -1 never).", func() float64 {
		if n.raft.State() == raft.Leader {
			return 0
		}
		t := n.raft.LastContact()
		if t.IsZero() {
			return -1
		}
		return time.Since(t).Seconds()
	})
	gauge("hookswitch_fenced", "1 while this node's lease has expired and it sends nothing.", func() float64 {
		if p.fenced.Load() {
			return 1
		}
		return 0
	})
	p.sources.register(reg)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
