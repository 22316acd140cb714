package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
)

// LoadOptions say how much load to send.
type LoadOptions struct {
	// Rate is the total events per second over all nodes (default 100).
	Rate float64
	// PerRequest is the events per ingest request (default 1).
	PerRequest int
	// Max bounds the events sent (default 100,000).
	Max int
	// Duration bounds the time (default 2 minutes).
	Duration time.Duration
	// Event builds event i (numbered over the whole load) sent to node;
	// default a call event with "src" the node and "lseq" i.
	Event func(node string, i int) map[string]any
	// Timeout bounds one ingest request (default 10s).
	Timeout time.Duration
}

// Load sends events to random live nodes in the background (at most one
// request in flight per node, so each node's answers come in its ingest
// order) and records every event-id answered 202, by the node that
// accepted it. Ids of a request answered otherwise, or lost in transport,
// are not accepted.
type Load struct {
	t      TB
	o      LoadOptions
	nodes  func() []*Node
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	accepted map[string][]string
	count    int
	errs     int
	lastErr  string
	busy     map[*Node]bool
	sent     atomic.Int64
}

// StartLoad starts sending; the load stops at Stop, at its bounds, or at
// the end of the test.
func StartLoad(t TB, nodes func() []*Node, o LoadOptions) *Load {
	t.Helper()
	if o.Rate <= 0 {
		o.Rate = 100
	}
	if o.PerRequest <= 0 {
		o.PerRequest = 1
	}
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Event == nil {
		o.Event = func(node string, i int) map[string]any {
			return map[string]any{
				"model": "call", "domain": "load.example", "user": "u" + strconv.Itoa(i%5),
				"src": node, "lseq": i, "orig_callid": node + "-" + strconv.Itoa(i),
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Duration)
	l := &Load{t: t, o: o, nodes: nodes, cancel: cancel, done: make(chan struct{}),
		accepted: map[string][]string{}, busy: map[*Node]bool{}}
	go l.run(ctx)
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	every := time.Duration(float64(time.Second) * float64(l.o.PerRequest) / l.o.Rate)
	tick := time.NewTicker(max(every, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		first := int(l.sent.Load())
		if first >= l.o.Max {
			return
		}
		nd := l.pick()
		if nd == nil {
			continue // every live node is busy (or none is live): skip this tick
		}
		n := min(l.o.PerRequest, l.o.Max-first)
		l.sent.Add(int64(n))
		wg.Go(func() {
			defer l.release(nd)
			l.send(context.Background(), nd, first, n) // a request once sent is answered: Stop waits for it
		})
	}
}

// pick returns a random running node with no request in flight, marked
// busy.
func (l *Load) pick() *Node {
	var free []*Node
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, nd := range l.nodes() {
		if nd.Running() && !l.busy[nd] {
			free = append(free, nd)
		}
	}
	if len(free) == 0 {
		return nil
	}
	nd := free[rand.IntN(len(free))]
	l.busy[nd] = true
	return nd
}

func (l *Load) release(nd *Node) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.busy, nd)
}

func (l *Load) send(ctx context.Context, nd *Node, first, n int) {
	evs := make([]map[string]any, n)
	for i := range evs {
		evs[i] = l.o.Event(nd.ID, first+i)
	}
	ids, err := Ingest(ctx, nd, l.o.Timeout, evs)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs++
		l.lastErr = err.Error()
		return
	}
	l.accepted[nd.ID] = append(l.accepted[nd.ID], ids...)
	l.count += len(ids)
}

// Stop stops the load, waits for the requests in flight, and returns the
// accepted event-ids by source node, in ingest order.
func (l *Load) Stop() map[string][]string {
	l.cancel()
	<-l.done
	return l.Accepted()
}

// Accepted returns the event-ids accepted so far by source node.
func (l *Load) Accepted() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]string, len(l.accepted))
	for k, v := range l.accepted {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Count is the number of events accepted so far.
func (l *Load) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// Errors is the number of requests not answered 202, and the last error.
func (l *Load) Errors() (int, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs, l.lastErr
}

// IngestError is an ingest request answered with another status than 202.
type IngestError struct {
	Node   string
	Status int
	Body   string
}

func (e *IngestError) Error() string {
	return fmt.Sprintf("ingest on %s: %d %s: %s", e.Node, e.Status, http.StatusText(e.Status), e.Body)
}

// Ingest posts events to the node's /v1/events (loopback needs no token)
// and returns the event-ids of a 202 answer; any other answer, an answer
// whose ids do not match the events, or a transport error is an error.
func Ingest(ctx context.Context, nd *Node, timeout time.Duration, events []map[string]any) ([]string, error) {
	body, err := json.Marshal(events)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, nd.BaseURL()+"/v1/events", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := nd.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, &IngestError{Node: nd.ID, Status: resp.StatusCode, Body: string(b)}
	}
	var res client.IngestResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("ingest on %s: %v: %s", nd.ID, err, b)
	}
	if res.Accepted != len(events) || len(res.EventIDs) != len(events) {
		return nil, fmt.Errorf("ingest on %s: %d events sent, answer %s", nd.ID, len(events), b)
	}
	return res.EventIDs, nil
}
