package synthetic

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultRate     = 2.0
	DefaultReseller = "demo"
	DefaultTick     = 100 * time.Millisecond
)

// DefaultDomains and DefaultUsers are the made-up PBX's tenants and
// extensions.
var (
	DefaultDomains = []string{"acme.demo", "globex.demo"}
	DefaultUsers   = []string{"100", "101", "102", "103", "104", "105", "106", "107"}
)

// Options shape the traffic.
type Options struct {
	// Rate is new calls per second (default DefaultRate).
	Rate float64
	// Reseller, Domains and Users are the scope of the calls (defaults
	// DefaultReseller, DefaultDomains, DefaultUsers).
	Reseller string
	Domains  []string
	Users    []string
	// Seed makes the plan reproducible (0: random).
	Seed uint64
	// Tick is Run's stepping period (default DefaultTick).
	Tick time.Duration
}

// Event is one hookswitch event (a flat JSON object).
type Event = map[string]any

// Emit takes the events of one step, in order. An error is counted
// (Stats.EmitErrors) and the events are not sent again.
type Emit func(ctx context.Context, events []Event) error

// Stats counts what the PBX did.
type Stats struct {
	Calls      uint64 // calls started
	Live       int    // calls not ended yet
	Events     uint64 // events handed to Emit without error
	EmitErrors uint64 // Emit calls that failed
	LastError  string // the last Emit error
}

// step is one pending step of a call.
type step int

const (
	stepAnswer step = iota
	stepEnd
)

type call struct {
	id               string
	domain, from, to string
	start, answer    time.Time
	answered         bool
	hangupCode       int
	next             step
	at               time.Time // when next happens
	end              time.Time
	seq              int // heap tie-breaker: start order
}

// PBX is the made-up PBX. Its methods are safe for concurrent use.
type PBX struct {
	opts Options

	mu      sync.Mutex
	rnd     *rand.Rand
	pending callHeap
	nextAt  time.Time // when the next call starts; zero before the first Step
	seq     int
	stats   Stats
}

// New returns a PBX with opts (zero fields take their defaults).
func New(opts Options) *PBX {
	if opts.Rate <= 0 {
		opts.Rate = DefaultRate
	}
	if opts.Reseller == "" {
		opts.Reseller = DefaultReseller
	}
	if len(opts.Domains) == 0 {
		opts.Domains = DefaultDomains
	}
	if len(opts.Users) < 2 {
		opts.Users = DefaultUsers
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &PBX{opts: opts, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Stats returns the counters now.
func (p *PBX) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Live = len(p.pending)
	return s
}

// Step advances the PBX to now and returns the events of everything that
// happened since the last Step, in time order: calls started at Rate,
// answered and ended when their time came. The first Step starts the
// clock (and the first call).
func (p *PBX) Step(now time.Time) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nextAt.IsZero() {
		p.nextAt = now
	}
	var out []Event
	for {
		// The earliest due of: the next pending step, the next new call
		// (a step due at the same time as a new call goes first).
		stepDue := len(p.pending) > 0 && !p.pending[0].at.After(now)
		switch {
		case stepDue && !p.pending[0].at.After(p.nextAt):
			out = append(out, p.advance(p.pending[0])...)
		case !p.nextAt.After(now):
			out = append(out, p.place(p.nextAt)...)
			p.nextAt = p.nextAt.Add(time.Duration(float64(time.Second) / p.opts.Rate))
		default:
			return out
		}
	}
}

// place starts a call at t: it rings for 0.3 to 2 s, then 85% are
// answered and talk for 1 to 6 s; the rest end unanswered (busy or no
// answer).
func (p *PBX) place(t time.Time) []Event {
	p.seq++
	p.stats.Calls++
	users := p.opts.Users
	from := p.rnd.IntN(len(users))
	to := (from + 1 + p.rnd.IntN(len(users)-1)) % len(users)
	c := &call{
		id:     fmt.Sprintf("demo-%d-%08x", p.seq, p.rnd.Uint32()),
		domain: p.opts.Domains[p.rnd.IntN(len(p.opts.Domains))],
		from:   users[from], to: users[to],
		start: t, seq: p.seq,
	}
	ring := time.Duration(300+p.rnd.IntN(1700)) * time.Millisecond
	if p.rnd.IntN(100) < 85 {
		c.answered, c.next, c.at = true, stepAnswer, t.Add(ring)
	} else {
		c.hangupCode = []int{486, 487, 480}[p.rnd.IntN(3)]
		c.next, c.at = stepEnd, t.Add(ring)
	}
	heap.Push(&p.pending, c)
	return []Event{
		p.callEvent(c, "start", "setup", t),
		p.presence(c.domain, c.from, "inuse", t),
		p.presence(c.domain, c.to, "ringing", t),
	}
}

// advance plays c's next step (c is the heap's first).
func (p *PBX) advance(c *call) []Event {
	switch c.next {
	case stepAnswer:
		c.answer = c.at
		talk := time.Duration(1000+p.rnd.IntN(5000)) * time.Millisecond
		c.next, c.at = stepEnd, c.at.Add(talk)
		heap.Fix(&p.pending, 0)
		return []Event{p.callEvent(c, "answer", "answered", c.answer), p.presence(c.domain, c.to, "inuse", c.answer)}
	default:
		c.end = c.at
		heap.Pop(&p.pending)
		end := p.callEvent(c, "end", "ended", c.end)
		end["remove"] = "yes"
		end["time_release"] = ms(c.end)
		end["disposition"] = disposition(c)
		return []Event{end, p.cdr(c), p.presence(c.domain, c.from, "open", c.end), p.presence(c.domain, c.to, "open", c.end)}
	}
}

func (p *PBX) callEvent(c *call, event, state string, t time.Time) Event {
	ev := p.scoped(Event{
		"model": "call", "source": "synthetic", "event": event, "call-state": state,
		"callid": c.id, "orig_callid": c.id, "term_callid": c.id,
		"orig_from_user": c.from, "orig_from_host": c.domain, "orig_from_uri": uri(c.from, c.domain),
		"orig_to_user": c.to, "orig_to_host": c.domain, "orig_to_uri": uri(c.to, c.domain),
		"time_start": ms(c.start), "timestamp": ms(t),
	}, c.domain, c.from, c.to)
	if !c.answer.IsZero() {
		ev["time_answer"] = ms(c.answer)
	}
	return ev
}

func (p *PBX) cdr(c *call) Event {
	ev := p.scoped(Event{
		"model": "cdr", "source": "synthetic",
		"callid": c.id, "orig_callid": c.id, "term_callid": c.id,
		"from": c.from, "from_domain": c.domain, "from_uri": uri(c.from, c.domain),
		"to": c.to, "to_domain": c.domain, "to_uri": uri(c.to, c.domain),
		"time_start": ms(c.start), "time_release": ms(c.end),
		"disposition": disposition(c), "answered": c.answered,
		"total_duration_ms": c.end.Sub(c.start).Milliseconds(),
	}, c.domain, c.from, c.to)
	var talk time.Duration
	if c.answered {
		ev["time_answer"] = ms(c.answer)
		talk = c.end.Sub(c.answer)
	} else {
		ev["hangup_code"] = c.hangupCode
	}
	ev["duration"] = int64(talk.Round(time.Second) / time.Second)
	ev["duration_ms"] = talk.Milliseconds()
	return ev
}

func (p *PBX) presence(domain, user, status string, t time.Time) Event {
	return p.scoped(Event{
		"model": "presence", "source": "synthetic",
		"device": "sip:" + user + "@" + domain, "user-presence-status": status, "timestamp": ms(t),
	}, domain, user)
}

// scoped sets the reseller, the domain and the user(s) of ev.
func (p *PBX) scoped(ev Event, domain string, users ...string) Event {
	ev["reseller"], ev["domain"] = p.opts.Reseller, domain
	if len(users) == 1 {
		ev["user"] = users[0]
	} else {
		ev["user"] = users
	}
	return ev
}

// Run steps the PBX every Tick until ctx is done and emits each step's
// events.
func (p *PBX) Run(ctx context.Context, emit Emit) {
	t := time.NewTicker(p.opts.Tick)
	defer t.Stop()
	for {
		if evs := p.Step(time.Now()); len(evs) > 0 {
			err := emit(ctx, evs)
			p.mu.Lock()
			if err != nil {
				p.stats.EmitErrors++
				p.stats.LastError = err.Error()
			} else {
				p.stats.Events += uint64(len(evs))
			}
			p.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// disposition names the outcome as the Kamailio source does.
func disposition(c *call) string {
	if c.answered {
		return "answered"
	}
	switch c.hangupCode {
	case 486:
		return "busy"
	case 480:
		return "no-answer"
	}
	return "cancelled"
}

func uri(user, host string) string { return "sip:" + user + "@" + host }

// ms is t as a unix-milliseconds string, as the Kamailio source sends
// times.
func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// callHeap orders pending calls by the time of their next step.
type callHeap []*call

func (h callHeap) Len() int { return len(h) }
func (h callHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h callHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *callHeap) Push(x any)   { *h = append(*h, x.(*call)) }
func (h *callHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}
