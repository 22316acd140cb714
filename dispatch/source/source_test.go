package source

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"ami://hs:topsecret@127.0.0.1:5038":              "ami://hs@127.0.0.1:5038",
		"ami://hs:topsecret@127.0.0.1:5038?domain=x.com": "ami://hs@127.0.0.1:5038",
		"kamailio://127.0.0.1:8448":                      "kamailio://127.0.0.1:8448",
	} {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Redact(u); got != want || strings.Contains(got, "topsecret") {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		w *= time.Millisecond
		got := b.Next()
		if got < w*8/10 || got > w*12/10 {
			t.Errorf("wait %d: %s, want %s ±20%%", i, got, w)
		}
	}
	b.Reset()
	if got := b.Next(); got > 120*time.Millisecond {
		t.Errorf("after Reset: %s, want about 100ms", got)
	}
	var zero Backoff
	if got := zero.Next(); got < DefaultBackoffMin*8/10 || got > DefaultBackoffMin*12/10 {
		t.Errorf("zero Backoff: %s, want about %s", got, DefaultBackoffMin)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (&Backoff{Min: time.Hour, Max: time.Hour}).Wait(ctx) {
		t.Error("Wait on a done context returned true")
	}
}

// blockingLog blocks every Append until released, then fails or stores.
type blockingLog struct {
	mu      sync.Mutex
	release chan struct{}
	fail    bool
	n       int
}

func (l *blockingLog) Append(ctx context.Context, es []eventlog.Entry) (uint64, int64, error) {
	select {
	case <-l.release:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return 0, 0, errors.New("no space left on device")
	}
	l.n += len(es)
	return uint64(l.n), 0, nil
}

func (l *blockingLog) count() int { l.mu.Lock(); defer l.mu.Unlock(); return l.n }

func TestSinkDropsWhenFullAndNeverBlocks(t *testing.T) {
	log := &blockingLog{release: make(chan struct{})}
	st := NewState("test", "test://x")
	s := NewSink(log, st, 4, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	// The writer takes what is queued and blocks in Append; 4 more fit
	// in the queue; the rest are dropped, and Offer never blocks.
	offered := 0
	deadline := time.Now().Add(5 * time.Second)
	for st.Snapshot().EventsDropped == 0 && time.Now().Before(deadline) {
		s.Offer([]byte(`{"model":"call","n":1}`))
		offered++
	}
	if st.Snapshot().EventsDropped == 0 {
		t.Fatal("a full queue dropped nothing")
	}
	if s.Offer([]byte(`not json`)) {
		t.Error("an invalid event was accepted")
	}
	// Released, then stopped: what is queued is appended on the way out.
	close(log.release)
	cancel()
	<-done
	snap := st.Snapshot()
	if int(snap.EventsAppended) != log.count() || log.count() == 0 {
		t.Errorf("appended %d, the log has %d", snap.EventsAppended, log.count())
	}
	if int(snap.EventsAppended+snap.EventsDropped) != offered+1 {
		t.Errorf("appended %d + dropped %d != offered %d", snap.EventsAppended, snap.EventsDropped, offered+1)
	}
	if !strings.Contains(snap.LastError, "invalid") {
		t.Errorf("last error %q", snap.LastError)
	}
}

func TestSinkCountsFailedAppends(t *testing.T) {
	log := &blockingLog{release: make(chan struct{}), fail: true}
	close(log.release)
	st := NewState("test", "test://x")
	s := NewSink(log, st, 0, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	for range 3 {
		s.Offer([]byte(`{"model":"cdr"}`))
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.Snapshot().EventsDropped < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	snap := st.Snapshot()
	if snap.EventsDropped != 3 || snap.EventsAppended != 0 || !strings.Contains(snap.LastError, "no space left") {
		t.Errorf("status %+v: want 3 dropped with the append error", snap)
	}
}

func TestStateConnected(t *testing.T) {
	st := NewState("kamailio", "kamailio://h:1")
	st.Connected(true)
	st.Read(3)
	s := st.Snapshot()
	if !s.Connected || s.Connects != 1 || s.EventsRead != 3 || s.ConnectedSince == "" || s.Kind != "kamailio" {
		t.Errorf("%+v", s)
	}
	st.Connected(false)
	if s := st.Snapshot(); s.Connected || s.ConnectedSince != "" || s.Connects != 1 {
		t.Errorf("%+v", s)
	}
}
