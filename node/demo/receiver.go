package demo

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// maxBody bounds one webhook body the receiver reads (a json-array batch
// of 1000 events of 64 KiB each at most would be larger, but the demo's
// events are small).
const maxBody = 8 << 20

// Receiver is a webhook endpoint on loopback that verifies signatures and
// counts what it gets.
type Receiver struct {
	srv *http.Server
	ln  net.Listener

	mu sync.RWMutex
	wh *standardwebhooks.Webhook

	posts, events, badSig, badBody atomic.Uint64
}

// ReceiverStats counts what the receiver got.
type ReceiverStats struct {
	Posts   uint64 // POSTs with a valid signature
	Events  uint64 // events in them
	BadSig  uint64 // POSTs refused: no or wrong signature
	BadBody uint64 // signed POSTs whose body was not events
}

// StartReceiver listens on a free loopback port and serves /hook.
func StartReceiver() (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Receiver{ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hook", r.serve)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

// URL is the receiver's post-url.
func (r *Receiver) URL() string { return "http://" + r.ln.Addr().String() + "/hook" }

// SetSecret sets the signing secret POSTs are verified with.
func (r *Receiver) SetSecret(secret string) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.wh = wh
	r.mu.Unlock()
	return nil
}

// Stats returns the counters now.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{Posts: r.posts.Load(), Events: r.events.Load(), BadSig: r.badSig.Load(), BadBody: r.badBody.Load()}
}

// Close stops the server at once.
func (r *Receiver) Close() error { return r.srv.Close() }

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	r.mu.RLock()
	wh := r.wh
	r.mu.RUnlock()
	if wh == nil || wh.Verify(body, req.Header) != nil {
		// 401 is a failure to hookswitch: the batch is sent again.
		r.badSig.Add(1)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	n, err := countEvents(body)
	if err != nil {
		r.badBody.Add(1)
		http.Error(w, "not events", http.StatusBadRequest)
		return
	}
	r.posts.Add(1)
	r.events.Add(uint64(n))
	w.WriteHeader(http.StatusNoContent)
}

// countEvents counts the events of a json-array or json body.
func countEvents(body []byte) (int, error) {
	var arr []json.RawMessage
	if err := json.Unmarshal(body, &arr); err == nil {
		return len(arr), nil
	}
	var one map[string]any
	if err := json.Unmarshal(body, &one); err != nil {
		return 0, err
	}
	return 1, nil
}
