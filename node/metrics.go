package node

import (
	"net/http"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsHandler serves /metrics: the node's counters in Prometheus form,
// read from the components when scraped (nothing is counted twice). It has
// no secrets in it; the mount point decides who may read it.
func (n *Node) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	counter("hookswitch_webhook_posts_total", "Successful webhook POSTs since start.", func() float64 { return float64(p.engine.Totals().Posts) })
	counter("hookswitch_webhook_errors_total", "Failed webhook POST attempts since start.", func() float64 { return float64(p.engine.Totals().Errors) })
	counter("hookswitch_webhook_events_total", "Events delivered to webhooks since start.", func() float64 { return float64(p.engine.Totals().Events) })
	gauge("hookswitch_subscriptions_sending", "Subscriptions this node sends now.", func() float64 { return float64(p.engine.Totals().Running) })
	gauge("hookswitch_websocket_connections", "Websocket connections open now.", func() float64 { return float64(p.wsHub.Stats().Connections) })
	counter("hookswitch_websocket_connections_total", "Websocket connections opened since start.", func() float64 { return float64(p.wsHub.Stats().Opened) })
	counter("hookswitch_websocket_events_sent_total", "Events sent to websocket connections since start.", func() float64 { return float64(p.wsHub.Stats().Sent) })
	counter("hookswitch_websocket_slow_disconnects_total", "Websocket connections closed for not keeping up.", func() float64 { return float64(p.wsHub.Stats().SlowDisconnects) })
	gauge("hookswitch_raft_leader", "1 when this node is the raft leader.", func() float64 {
		if n.raft.State() == raft.Leader {
			return 1
		}
		return 0
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
