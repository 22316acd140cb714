package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/dispatch/source/ami"
	"github.com/hookswitch/hookswitch/dispatch/source/kamailio"
)

// DefaultSources is the sources setting's default: HTTP ingest only
// (DESIGN.md "PBX sources"; http is always on).
const DefaultSources = "http"

// SourcesPath is the read-only view of this node's sources, for local
// callers and super tokens (like /metrics).
const SourcesPath = source.ViewPath

// SourceSpec is one parsed entry of the sources setting.
type SourceSpec struct {
	Kind     string // http, kamailio, ami
	Addr     string // HOST:PORT (kamailio, ami)
	Username string // ami
	Secret   string // ami; never logged
	Domain   string // ami: ?domain= the domain of events without an AccountCode
	Name     string // the URL without its password
}

// ParseSources reads the sources setting: "http", "kamailio://HOST:PORT",
// "ami://USER:PASS@HOST:PORT[?domain=D]". Its errors never contain a
// password.
func ParseSources(list []string) ([]SourceSpec, error) {
	var out []SourceSpec
	seen := map[string]bool{}
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" || s == "http" || s == "http://" {
			continue // always on
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%w: sources: entry %d is not http, kamailio://HOST:PORT or ami://USER:PASS@HOST:PORT", ErrConfig, len(out)+1)
		}
		name := source.Redact(u)
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("%w: sources: %s: want HOST:PORT", ErrConfig, name)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("%w: sources: %s: no path is expected", ErrConfig, name)
		}
		sp := SourceSpec{Kind: u.Scheme, Addr: u.Host, Name: name}
		switch u.Scheme {
		case kamailio.Kind:
			if u.User != nil || u.RawQuery != "" {
				return nil, fmt.Errorf("%w: sources: %s: evapi takes no user or options", ErrConfig, name)
			}
		case ami.Kind:
			if u.User == nil || u.User.Username() == "" {
				return nil, fmt.Errorf("%w: sources: %s: AMI needs ami://USER:PASS@HOST:PORT", ErrConfig, name)
			}
			sp.Username = u.User.Username()
			sp.Secret, _ = u.User.Password()
			q := u.Query()
			for k := range q {
				if k != "domain" {
					return nil, fmt.Errorf("%w: sources: %s: unknown option %q (only domain)", ErrConfig, name, k)
				}
			}
			sp.Domain = q.Get("domain")
		default:
			return nil, fmt.Errorf("%w: sources: %s: unknown kind %q (http, kamailio, ami)", ErrConfig, name, u.Scheme)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: sources: %s is listed twice", ErrConfig, name)
		}
		seen[name] = true
		out = append(out, sp)
	}
	return out, nil
}

// sourceSet is the node's PBX sources, started and stopped with the
// pipeline.
type sourceSet struct {
	list   []source.Source
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newSourceSet builds the sources of the setting (validated by
// Config.Validate), appending to app.
func newSourceSet(specs []SourceSpec, app source.Appender, logger *slog.Logger) *sourceSet {
	s := &sourceSet{}
	for _, sp := range specs {
		switch sp.Kind {
		case kamailio.Kind:
			s.list = append(s.list, kamailio.New(kamailio.Options{Addr: sp.Addr, Log: app, Logger: logger}))
		case ami.Kind:
			s.list = append(s.list, ami.New(ami.Options{Addr: sp.Addr, Username: sp.Username, Secret: sp.Secret,
				Mapping: ami.Mapping{Domain: sp.Domain}, Log: app, Logger: logger}))
		}
	}
	return s
}

// start runs every source until stop.
func (s *sourceSet) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, src := range s.list {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); src.Run(ctx) }()
	}
}

// stop ends the sources; what they queued is appended before it returns
// (bounded by the sources themselves).
func (s *sourceSet) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// Statuses returns every source's status.
func (s *sourceSet) statuses() []source.Status {
	out := make([]source.Status, 0, len(s.list))
	for _, src := range s.list {
		out = append(out, src.Status())
	}
	return out
}

// handler serves source.View.
func (s *sourceSet) handler(nodeID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(source.View{Node: nodeID, Sources: s.statuses()})
	})
}

// register adds the sources' metrics, labelled by source (the URL without
// its password) and kind.
func (s *sourceSet) register(reg prometheus.Registerer) {
	for _, src := range s.list {
		st := src.Status()
		labels := prometheus.Labels{"source": st.Name, "kind": st.Kind}
		gauge := func(name, help string, f func(source.Status) float64) {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels},
				func() float64 { return f(src.Status()) }))
		}
		counter := func(name, help string, f func(source.Status) uint64) {
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels},
				func() float64 { return float64(f(src.Status())) }))
		}
		gauge("hookswitch_source_connected", "1 while the PBX source is connected (logged in, for AMI).", func(st source.Status) float64 {
			if st.Connected {
				return 1
			}
			return 0
		})
		counter("hookswitch_source_connects_total", "Connections of the PBX source established since start.", func(st source.Status) uint64 { return st.Connects })
		counter("hookswitch_source_events_read_total", "PBX events read off the source's socket since start.", func(st source.Status) uint64 { return st.EventsRead })
		counter("hookswitch_source_events_appended_total", "Events of the source made durable in the local log since start.", func(st source.Status) uint64 { return st.EventsAppended })
		counter("hookswitch_source_events_dropped_total", "Events of the source lost (queue full, append failed, invalid) since start.", func(st source.Status) uint64 { return st.EventsDropped })
		counter("hookswitch_source_errors_total", "Connection, protocol and append errors of the source since start.", func(st source.Status) uint64 { return st.Errors })
	}
}
