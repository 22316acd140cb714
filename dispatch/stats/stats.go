package stats

import (
	"sync"
	"time"
)

// Window is how many minutes are kept.
const Window = 60

// Minute is one minute's counts.
type Minute struct {
	// Start is the minute's start, Unix milliseconds.
	Start int64 `json:"start"`
	// Delivered is events delivered by successful POSTs.
	Delivered uint64 `json:"delivered"`
	// Posts is successful POSTs.
	Posts uint64 `json:"posts"`
	// Failed is failed POST attempts (each retry counts).
	Failed uint64 `json:"failed"`
}

type ring struct {
	buckets [Window]Minute
	last    int64 // minute number (Unix minutes) of the latest record
}

// Minutes counts outcomes per subscription and minute. The zero value is
// not usable; use New. A nil *Minutes ignores records, so a caller needs no
// check.
type Minutes struct {
	now func() time.Time

	mu    sync.Mutex
	subs  map[string]*ring
	sweep int64 // minute of the last sweep of idle subscriptions
}

// New returns an empty counter; now is the clock (time.Now when nil).
func New(now func() time.Time) *Minutes {
	if now == nil {
		now = time.Now
	}
	return &Minutes{now: now, subs: map[string]*ring{}}
}

// Delivered records a successful POST of n events.
func (m *Minutes) Delivered(subID string, n int) {
	if m == nil {
		return
	}
	m.add(subID, func(b *Minute) { b.Posts++; b.Delivered += uint64(max(n, 0)) })
}

// Failed records one failed POST attempt.
func (m *Minutes) Failed(subID string) {
	if m == nil {
		return
	}
	m.add(subID, func(b *Minute) { b.Failed++ })
}

func (m *Minutes) add(subID string, f func(*Minute)) {
	minute := m.now().Unix() / 60
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepIdle(minute)
	r := m.subs[subID]
	if r == nil {
		r = &ring{}
		m.subs[subID] = r
	}
	b := &r.buckets[minute%Window]
	if b.Start != minute*60000 {
		*b = Minute{Start: minute * 60000}
	}
	f(b)
	if minute > r.last {
		r.last = minute
	}
}

// sweepIdle forgets, at most once a minute, subscriptions with nothing
// recorded in the window (deleted, moved away, or idle): memory stays
// bounded by the subscriptions active in the last hour.
func (m *Minutes) sweepIdle(minute int64) {
	if minute == m.sweep {
		return
	}
	m.sweep = minute
	for id, r := range m.subs {
		if minute-r.last >= Window {
			delete(m.subs, id)
		}
	}
}

// Last returns subID's counts for the last Window minutes, oldest first,
// ending with the current minute; minutes with nothing are zero.
func (m *Minutes) Last(subID string) []Minute {
	clock := time.Now
	if m != nil {
		clock = m.now
	}
	now := clock().Unix() / 60
	out := make([]Minute, Window)
	for i := range out {
		out[i].Start = (now - Window + 1 + int64(i)) * 60000
	}
	if m == nil {
		return out
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.subs[subID]
	if r == nil {
		return out
	}
	for i := range out {
		if b := r.buckets[(now-Window+1+int64(i))%Window]; b.Start == out[i].Start {
			out[i] = b
		}
	}
	return out
}
