package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fakeNode stands in for a hookswitch node in -dry-run: it speaks just
// enough of the HTTP contract (GET /readyz, POST/DELETE /v1/subscriptions,
// POST /v1/events answered 202 {"accepted","event-ids"}) and delivers every
// ingested event to the subscriptions on its domain as json-array POSTs,
// one in flight per subscription, with X-Correlation-ID and webhook-*
// headers. It checks the bench's measurement code, not hookswitch.
//
// dupFrac re-sends that fraction of batches (the receiver must count
// duplicates); dropFrac loses that fraction of deliveries (they must show
// up as undelivered).
type fakeNode struct {
	token             string
	dupFrac, dropFrac float64

	mu       sync.Mutex
	rng      *rand.Rand
	subs     map[string]*fakeSub
	byDomain map[string][]*fakeSub

	seq    atomic.Int64
	postID atomic.Int64
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	srv    *http.Server
	url    string
}

type fakeSub struct {
	id, model, url, domain string
	batchMax               int
	mu                     sync.Mutex
	queue                  [][]byte
	wake                   chan struct{}
	stop                   chan struct{}
}

// fakeTransport caps the fake node's connections to the receiver: in a dry
// run both ends live in this process, and one connection per subscription
// (as hookswitch keeps) would need two descriptors each.
func fakeTransport() *http.Transport {
	t := newTransport(512)
	t.MaxConnsPerHost = 512
	return t
}

func startFakeNode(dupFrac, dropFrac float64, seed uint64) (*fakeNode, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeNode{
		token:    "dry-run-token",
		dupFrac:  dupFrac,
		dropFrac: dropFrac,
		rng:      rand.New(rand.NewPCG(seed, 7)),
		subs:     map[string]*fakeSub{},
		byDomain: map[string][]*fakeSub{},
		client:   &http.Client{Transport: fakeTransport(), Timeout: 15 * time.Second},
		ctx:      ctx,
		cancel:   cancel,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ready","node":"dry-run"}`)
	})
	mux.HandleFunc("POST /v1/subscriptions", f.createSub)
	mux.HandleFunc("DELETE /v1/subscriptions/{id}", f.deleteSub)
	mux.HandleFunc("POST /v1/events", f.ingest)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: serverLog("dry-run node")}
	f.url = "http://" + ln.Addr().String()
	go func() {
		if err := f.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("dry-run node stopped: %v", err)
		}
	}()
	return f, nil
}

func (f *fakeNode) close() {
	f.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	f.wg.Wait()
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *fakeNode) createSub(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		jsonError(w, http.StatusUnauthorized, "token required")
		return
	}
	var in subSpec
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ID == "" || in.PostURL == "" || in.Model == "" {
		jsonError(w, http.StatusBadRequest, "bad subscription")
		return
	}
	s := &fakeSub{id: in.ID, model: in.Model, url: in.PostURL, domain: in.Domain, batchMax: max(1, in.BatchMax),
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	f.mu.Lock()
	if _, ok := f.subs[s.id]; ok {
		f.mu.Unlock()
		jsonError(w, http.StatusConflict, "exists")
		return
	}
	f.subs[s.id] = s
	f.byDomain[s.domain] = append(f.byDomain[s.domain], s)
	f.mu.Unlock()
	f.wg.Add(1)
	go f.send(s)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(in)
}

func (f *fakeNode) deleteSub(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		jsonError(w, http.StatusUnauthorized, "token required")
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	s, ok := f.subs[id]
	if ok {
		delete(f.subs, id)
		list := f.byDomain[s.domain]
		for i, x := range list {
			if x == s {
				f.byDomain[s.domain] = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		close(s.stop)
	}
	f.mu.Unlock()
	if !ok {
		jsonError(w, http.StatusNotFound, "no such subscription")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// ingest accepts one object or an array, stamps event-id, node and
// ingest-time, and queues each event on the subscriptions that match it.
func (f *fakeNode) ingest(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
	if err != nil {
		jsonError(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	var raws []json.RawMessage
	if b := bytes.TrimLeft(body, " \t\r\n"); len(b) > 0 && b[0] == '[' {
		err = json.Unmarshal(b, &raws)
	} else {
		var one json.RawMessage
		err = json.Unmarshal(b, &one)
		raws = []json.RawMessage{one}
	}
	if err != nil || len(raws) == 0 {
		jsonError(w, http.StatusBadRequest, "body must be a JSON object or array of objects")
		return
	}
	type head struct {
		Model  string `json:"model"`
		Domain string `json:"domain"`
		Probe  string `json:"bench-probe"`
	}
	heads := make([]head, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &heads[i]); err != nil || heads[i].Model == "" {
			jsonError(w, http.StatusBadRequest, "event "+strconv.Itoa(i)+": model required")
			return
		}
	}
	ids := make([]string, len(raws))
	now := time.Now().UnixMilli()
	stamped := make([][]byte, len(raws))
	for i, raw := range raws {
		raw = bytes.TrimRight(raw, " \t\r\n")
		id := "dry-" + strconv.FormatInt(f.seq.Add(1), 10)
		ids[i] = id
		ev := make([]byte, 0, len(raw)+64)
		ev = append(ev, raw[:len(raw)-1]...)
		ev = fmt.Appendf(ev, `,"event-id":%q,"node":"dry-run","ingest-time":%d}`, id, now)
		stamped[i] = ev
	}
	f.mu.Lock()
	for i, ev := range stamped {
		for _, s := range f.byDomain[heads[i].Domain] {
			if s.model != "*" && s.model != heads[i].Model {
				continue
			}
			// Faults spare the warm-up probes, so a run with
			// -dry-run-drop does not wait out the warm-up timeout.
			if f.dropFrac > 0 && heads[i].Probe == "" && f.rng.Float64() < f.dropFrac {
				continue
			}
			s.mu.Lock()
			s.queue = append(s.queue, ev)
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]any{"accepted": len(raws), "event-ids": ids})
}

// send is one subscription's sender: one POST in flight, batches of up to
// batchMax queued events, retried until they succeed.
func (f *fakeNode) send(s *fakeSub) {
	defer f.wg.Done()
	var body bytes.Buffer
	for {
		select {
		case <-s.wake:
		case <-s.stop:
			return
		case <-f.ctx.Done():
			return
		}
		for {
			s.mu.Lock()
			n := min(len(s.queue), s.batchMax)
			take := s.queue[:n:n]
			s.queue = s.queue[n:]
			if len(s.queue) == 0 {
				s.queue = nil
			}
			s.mu.Unlock()
			if n == 0 {
				break
			}
			body.Reset()
			body.WriteByte('[')
			for i, ev := range take {
				if i > 0 {
					body.WriteByte(',')
				}
				body.Write(ev)
			}
			body.WriteByte(']')
			msgID := "msg_dry" + strconv.FormatInt(f.postID.Add(1), 10)
			f.mu.Lock()
			dup := f.dupFrac > 0 && f.rng.Float64() < f.dupFrac
			f.mu.Unlock()
			for range 1 + btoi(dup) {
				if !f.post(s, msgID, body.Bytes()) {
					return
				}
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// post delivers one batch, retrying every 100ms; false when stopped.
func (f *fakeNode) post(s *fakeSub, msgID string, body []byte) bool {
	for {
		req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, s.url, bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "hookswitch/dry-run")
		req.Header.Set("X-Correlation-ID", s.id)
		req.Header.Set("webhook-id", msgID)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
		req.Header.Set("webhook-signature", "v1,dry-run-unsigned")
		resp, err := f.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return true
			}
		}
		select {
		case <-s.stop:
			return false
		case <-f.ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}
