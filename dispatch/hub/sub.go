package hub

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/dispatch/match"
)

// DefaultNextMax is how many queued events Next hands out at most when
// given max <= 0.
const DefaultNextMax = 64

// Sub is one connection's subscription: its scope, its filters, its queue
// and its position in every source log. Next must be called from one
// goroutine at a time (the connection's writer); SetFilters, Ready and
// Close may be called from any.
type Sub struct {
	h        *Hub
	scope    Scope
	queueMax int
	notify   chan struct{} // capacity 1: something to hand out, or failed
	closed   atomic.Bool
	gen      atomic.Uint64
	filters  atomic.Pointer[filterState]

	mu    sync.Mutex // guards the fields below; taken after a source's mu
	srcs  []*subSrc  // only appended to or replaced: Next reads a snapshot
	queue ring
	err   error

	buf []queued // Next's scratch space
}

// filterState is one filter set with a generation number, so events
// queued under an older set are checked again when handed out.
type filterState struct {
	set match.FilterSet
	gen uint64
	key *indexKey // how the Sub is filed in the sources' indexes
}

// subSrc is a Sub's position in one source log.
type subSrc struct {
	sub *Sub
	src *source
	// attached: in src.ix, under key; after: the reader skips events up
	// to it for this Sub (its start, then the last event it looked at).
	// Guarded by src.mu.
	attached bool
	key      *indexKey
	after    uint64
	// live: attached (or the source is gone). readPos: while not live,
	// every event up to it has been examined. Both owned by the goroutine
	// calling Next once the Sub is published.
	live    bool
	readPos uint64
}

type queued struct {
	m   *Message
	gen uint64
}

// admit reports whether ev passes the Sub's scope and filters, and under
// which filter generation.
func (s *Sub) admit(ev *dispatch.Event) (uint64, bool) {
	if !s.scope.Allows(ev) {
		return 0, false
	}
	f := s.filters.Load()
	return f.gen, f.match(ev)
}

func (f *filterState) match(ev *dispatch.Event) bool {
	if f.set.Empty() {
		return true
	}
	fields, _ := ev.Fields()
	return f.set.Match(fields)
}

// offer queues an event for the Sub, or fails it with ErrSlow when its
// queue is full. Called by a source's reader with the source's mu held.
func (s *Sub) offer(m *Message, gen uint64, h *Hub) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	if s.queue.n >= s.queueMax {
		s.err = fmt.Errorf("%w: more than %d events waiting to be sent", ErrSlow, s.queueMax)
		s.queue = ring{}
		s.mu.Unlock()
		h.slow.Add(1)
		s.wake()
		return
	}
	s.queue.push(queued{m: m, gen: gen}, s.queueMax)
	s.mu.Unlock()
	s.wake()
}

func (s *Sub) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// fail ends the Sub with err (the first error wins) and drops its queue.
func (s *Sub) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.queue = ring{}
	}
	s.mu.Unlock()
	s.wake()
}

// Ready returns a channel that receives when Next may have something new
// (or an error) after it returned nothing.
func (s *Sub) Ready() <-chan struct{} { return s.notify }

// SetFilters replaces the Sub's filters (none lets everything in); on an
// invalid list (match.NewFilterSet's errors) the filters in place stay.
// Nothing Next hands out after SetFilters returns fails the new set, and
// the sources' readers apply the new set to every event they have not
// offered yet.
func (s *Sub) SetFilters(filters []match.Filter) error {
	fs, err := match.NewFilterSet(filters)
	if err != nil {
		return err
	}
	st := &filterState{set: fs, key: chooseKey(filters)}
	// The hub's mu keeps the Sub's sources fixed; holding every source's
	// mu makes the new set and its index key take effect at once for
	// each reader.
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	s.mu.Lock()
	srcs := s.srcs
	s.mu.Unlock()
	for _, ss := range srcs {
		ss.src.mu.Lock()
	}
	st.gen = s.gen.Add(1)
	s.filters.Store(st)
	for _, ss := range srcs {
		if ss.attached {
			ss.src.ix.remove(ss)
			ss.src.ix.add(ss, st.key)
		}
		ss.src.mu.Unlock()
	}
	return nil
}

// Next appends to dst the next events for the connection: about max of the
// queued live ones, or, while it replays a source log, the next events it
// reads from that log itself. With nothing to send now it returns dst as is
// and a nil error: wait on Ready, then call it again. Once it fails
// (ErrSlow, ErrClosed, ErrStopped, ErrReplayTrimmed, a log error) it keeps
// failing; close the Sub.
func (s *Sub) Next(dst []*Message, max int) ([]*Message, error) {
	if max <= 0 {
		max = DefaultNextMax
	}
	n0 := len(dst)
	for {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return dst[:n0], err
		}
		if s.queue.n > 0 {
			s.buf = s.queue.pop(s.buf[:0], max)
			s.mu.Unlock()
			f := s.filters.Load()
			for _, q := range s.buf {
				if q.gen != f.gen && !f.match(q.m.Event) {
					continue // queued under filters since replaced
				}
				dst = append(dst, q.m)
			}
			clear(s.buf)
			if n := len(dst) - n0; n > 0 {
				s.h.sent.Add(uint64(n))
				return dst, nil
			}
			continue
		}
		srcs := s.srcs
		s.mu.Unlock()
		var ss *subSrc
		for _, x := range srcs {
			if !x.live {
				ss = x
				break
			}
		}
		if ss == nil {
			return dst, nil
		}
		var err error
		dst, err = s.catchUp(ss, dst)
		if err != nil {
			s.fail(err)
			return dst[:n0], err
		}
		if n := len(dst) - n0; n > 0 {
			s.h.sent.Add(uint64(n))
			s.h.replayed.Add(uint64(n))
			return dst, nil
		}
	}
}

// catchUp reads the next chunk of a source log the Sub has not caught up
// with, up to the position of the source's reader, and appends what the
// Sub admits; once at that position, it attaches the Sub to the reader.
func (s *Sub) catchUp(ss *subSrc, dst []*Message) ([]*Message, error) {
	src := ss.src
	if src.gone.Load() {
		ss.live = true
		return dst, nil
	}
	src.mu.Lock()
	pos := src.pos
	if ss.readPos >= pos {
		// Caught up: from here on the reader offers what follows pos.
		if !s.closed.Load() && !src.gone.Load() {
			ss.after = ss.readPos
			src.attach(ss)
		}
		src.mu.Unlock()
		ss.live = true
		return dst, nil
	}
	src.mu.Unlock()
	from := ss.readPos + 1
	n := int(min(pos-from+1, uint64(s.h.opts.ReadChunk)))
	recs, err := src.log.Read(from, n)
	if err != nil {
		return dst, fmt.Errorf("hub: replay of node %s: %w", src.node, err)
	}
	if len(recs) == 0 || recs[0].Seq != from {
		return dst, fmt.Errorf("%w: node %s's event %d was trimmed before it was sent", ErrReplayTrimmed, src.node, from)
	}
	inc := src.log.Incarnation()
	for i := range recs {
		if recs[i].Seq > pos {
			break
		}
		ev := toEvent(src.node, inc, &recs[i])
		ss.readPos = ev.Seq
		if _, ok := s.admit(ev); ok {
			dst = append(dst, newMessage(ev))
		}
	}
	return dst, nil
}

// Close ends the Sub and detaches it from the hub. It may be called more
// than once, from any goroutine.
func (s *Sub) Close() {
	if s.closed.Swap(true) {
		return
	}
	s.fail(ErrClosed)
	h := s.h
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
	s.mu.Lock()
	srcs := s.srcs
	s.mu.Unlock()
	for _, ss := range srcs {
		ss.src.mu.Lock()
		ss.src.detach(ss)
		ss.src.mu.Unlock()
	}
	h.open.Add(-1)
}

// Err returns the error the Sub failed with, nil while it runs.
func (s *Sub) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// ring is a FIFO of queued events that grows up to a bound.
type ring struct {
	buf  []queued
	head int
	n    int
}

func (r *ring) push(q queued, bound int) {
	if r.n == len(r.buf) {
		size := min(max(16, 2*len(r.buf)), max(bound, 1))
		nb := make([]queued, size)
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = q
	r.n++
}

// pop appends up to k items to dst and removes them.
func (r *ring) pop(dst []queued, k int) []queued {
	k = min(k, r.n)
	for i := 0; i < k; i++ {
		j := (r.head + i) % len(r.buf)
		dst = append(dst, r.buf[j])
		r.buf[j] = queued{}
	}
	r.head = (r.head + k) % max(len(r.buf), 1)
	r.n -= k
	if r.n == 0 {
		r.head = 0
	}
	return dst
}
