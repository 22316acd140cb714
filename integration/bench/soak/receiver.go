package main

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/dispatch"
)

// receiver is the webhook endpoint of every subscription (told apart by
// X-Correlation-ID). It answers a POST 500 or 503 (with Retry-After: 1) at
// the rate fail, hangs it until the client gives up at the rate hang, and
// 200 otherwise. Of the POSTs it answers 200 it keeps one bit per
// (subscription, source log, seq): the harness's Receiver keeps every
// body and event, which over a 30-minute soak at 2,000 events/s is
// gigabytes — the soak's own memory would be what grows.
type receiver struct {
	fail, hang float64
	release    chan struct{} // closed at the end: hanging handlers return

	posts, refused, hung, hanging, badBody atomic.Int64

	mu   sync.Mutex
	subs map[string]*subRecv
}

// subRecv is what one subscription got.
type subRecv struct {
	seen       map[string]*bitset // log incarnation → seqs delivered
	high       map[string]uint64  // log incarnation → highest seq first-delivered
	delivered  int                // first deliveries
	duplicates int                // deliveries beyond the first
	outOfOrder int                // first deliveries after a later seq of the same log
}

// bitset is a growable set of small integers.
type bitset []uint64

func (b *bitset) set(i uint64) (was bool) {
	w := int(i / 64)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b)+len(*b)/2)...)
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) has(i uint64) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(uint64(1)<<(i%64)) != 0
}

func newReceiver(fail, hang float64) *receiver {
	return &receiver{fail: fail, hang: hang, release: make(chan struct{}), subs: map[string]*subRecv{}}
}

// start serves on a free loopback port and returns the base URL and a
// function that stops the server (releasing hanging requests).
func (r *receiver) start() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	var once sync.Once
	return "http://" + ln.Addr().String(), func() {
		once.Do(func() {
			close(r.release)
			_ = srv.Close()
		})
	}, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.posts.Add(1)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	switch x := rand.Float64(); {
	case x < r.hang:
		r.hung.Add(1)
		r.hanging.Add(1)
		defer r.hanging.Add(-1)
		select {
		case <-req.Context().Done():
		case <-r.release:
		}
		return
	case x < r.hang+r.fail/2:
		r.refused.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		return
	case x < r.hang+r.fail:
		r.refused.Add(1)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var evs []struct {
		ID string `json:"event-id"`
	}
	if err := json.Unmarshal(body, &evs); err != nil {
		r.badBody.Add(1)
		w.WriteHeader(http.StatusBadRequest) // retried: counted, and a bug to look at
		return
	}
	r.record(req.Header.Get("X-Correlation-ID"), evs)
	w.WriteHeader(http.StatusOK)
}

func (r *receiver) record(sub string, evs []struct {
	ID string `json:"event-id"`
}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.subs[sub]
	if s == nil {
		s = &subRecv{seen: map[string]*bitset{}, high: map[string]uint64{}}
		r.subs[sub] = s
	}
	for _, e := range evs {
		inc, seq, err := dispatch.ParseEventID(e.ID)
		if err != nil {
			r.badBody.Add(1)
			continue
		}
		b := s.seen[inc]
		if b == nil {
			b = &bitset{}
			s.seen[inc] = b
		}
		if b.set(seq) {
			s.duplicates++
			continue
		}
		s.delivered++
		if h, ok := s.high[inc]; ok && seq < h {
			s.outOfOrder++
		} else {
			s.high[inc] = seq
		}
	}
}

// account is the exact accounting of the accepted events against what the
// subscriptions got.
type account struct {
	Accepted   int      `json:"accepted"`   // events accepted at ingest
	Expected   int      `json:"expected"`   // (event, subscription) pairs it should reach
	Delivered  int      `json:"delivered"`  // of those, delivered at least once
	Lost       int      `json:"lost"`       // of those, never delivered
	Duplicates int      `json:"duplicates"` // deliveries beyond the first
	OutOfOrder int      `json:"out-of-order"`
	Unexpected int      `json:"unexpected"` // accepted events delivered to a subscription they do not match
	Unknown    int      `json:"unknown"`    // delivered events whose ingest answer the load never got (timeouts)
	LostEx     []string `json:"lost-examples,omitempty"`
}

func (a account) String() string {
	s := "accepted " + strconv.Itoa(a.Accepted) + ", expected deliveries " + strconv.Itoa(a.Expected) +
		", delivered " + strconv.Itoa(a.Delivered) + ", lost " + strconv.Itoa(a.Lost) +
		", duplicates " + strconv.Itoa(a.Duplicates) + ", out of order " + strconv.Itoa(a.OutOfOrder) +
		", unexpected " + strconv.Itoa(a.Unexpected) + ", unknown " + strconv.Itoa(a.Unknown)
	if len(a.LostEx) > 0 {
		s += " (lost e.g. " + strings.Join(a.LostEx, ", ") + ")"
	}
	return s
}

// account checks every accepted event against every subscription it
// matches (k of subs); full also checks every delivery against the
// accepted events (Unexpected, Unknown).
func (r *receiver) account(acc *accepted, k, subs int, full bool) account {
	r.mu.Lock()
	defer r.mu.Unlock()
	var a account
	ids := make([]string, subs)
	for j := range ids {
		ids[j] = subID(j)
	}
	byJ := make([]*subRecv, subs)
	for j := range byJ {
		byJ[j] = r.subs[ids[j]]
	}
	buf := make([]int, 0, k)
	acc.each(func(inc string, seq, i uint64) {
		a.Accepted++
		for _, j := range matchesInto(buf[:0], i, k, subs) {
			a.Expected++
			if s := byJ[j]; s != nil && s.seen[inc] != nil && s.seen[inc].has(seq) {
				a.Delivered++
				continue
			}
			a.Lost++
			if len(a.LostEx) < 5 {
				a.LostEx = append(a.LostEx, dispatch.EventID(inc, seq)+"→"+ids[j])
			}
		}
	})
	for j, id := range ids {
		s := r.subs[id]
		if s == nil {
			continue
		}
		a.Duplicates += s.duplicates
		a.OutOfOrder += s.outOfOrder
		if s.delivered == 0 || !full {
			continue
		}
		// Every first delivery is either one of the expected ones, an
		// accepted event that does not match (a filtering bug), or an
		// event the load never heard back about.
		for inc, b := range s.seen {
			for w, word := range *b {
				if word == 0 {
					continue
				}
				for bit := range 64 {
					if word&(1<<bit) == 0 {
						continue
					}
					seq := uint64(w*64 + bit)
					i, ok := acc.index(inc, seq)
					if !ok {
						a.Unknown++
						continue
					}
					if !contains(matches(i, k, subs), j) {
						a.Unexpected++
					}
				}
			}
		}
	}
	return a
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
