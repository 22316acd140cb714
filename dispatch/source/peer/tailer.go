package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Mirror is this node's durable copy of one peer's event log. It behaves
// like the peer's log (same seqs, ingest times and incarnation) and is
// replaced whole when the peer's log is recreated (a new incarnation).
type Mirror struct {
	path string
	opts eventlog.Options

	mu  sync.RWMutex
	log *eventlog.Log
}

// OpenMirror opens (or creates) the mirror file at path.
func OpenMirror(path string, opts eventlog.Options) (*Mirror, error) {
	opts.Path = path
	opts.Incarnation = ""
	l, err := eventlog.Open(opts)
	if err != nil {
		return nil, err
	}
	return &Mirror{path: path, opts: opts, log: l}, nil
}

func (m *Mirror) cur() *eventlog.Log {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.log
}

// Incarnation, FirstSeq, LastSeq, Read, Changed and SeqAtOrAfter are those
// of the current copy.
func (m *Mirror) Incarnation() string { return m.cur().Incarnation() }
func (m *Mirror) FirstSeq() uint64    { return m.cur().FirstSeq() }
func (m *Mirror) LastSeq() uint64     { return m.cur().LastSeq() }
func (m *Mirror) Read(from uint64, max int) ([]eventlog.Record, error) {
	return m.cur().Read(from, max)
}
func (m *Mirror) Changed() <-chan struct{} { return m.cur().Changed() }
func (m *Mirror) SeqAtOrAfter(t time.Time) (uint64, error) {
	return m.cur().SeqAtOrAfter(t)
}

// Trim applies retention to the copy.
func (m *Mirror) Trim(keepFrom uint64, dropped func([]eventlog.Record)) (eventlog.TrimStats, error) {
	return m.cur().Trim(keepFrom, dropped)
}

// Reset replaces the copy with an empty one of incarnation inc. Readers
// waiting on Changed wake up (the old copy is closed) and see the new
// incarnation.
func (m *Mirror) Reset(inc string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.log.Close(); err != nil {
		return err
	}
	if err := os.Remove(m.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("peer: remove mirror: %w", err)
	}
	opts := m.opts
	opts.Incarnation = inc
	l, err := eventlog.Open(opts)
	if err != nil {
		return err
	}
	m.log = l
	return nil
}

// Close closes the copy.
func (m *Mirror) Close() error { return m.cur().Close() }

func (m *Mirror) appendRecords(recs []eventlog.Record) error {
	return m.cur().AppendMirror(recs)
}

// Tailer copies one peer's log into a Mirror: it streams GET
// /internal/v1/log from the peer, from the mirror's end, and follows it
// live, reconnecting with backoff. One Tailer per peer, whatever the number
// of subscriptions.
type Tailer struct {
	Node   string
	Mirror *Mirror
	// Addr returns the peer's HTTP address now (it may change).
	Addr   func() (string, bool)
	Token  string
	Client *http.Client
	Scheme string // "http" (default) or "https"
	Logger *slog.Logger
	// Trimmed, when set, is called after records left the start of the
	// copy because the peer dropped them (a trim notice, or a new copy
	// after a gap): readers holding some in memory must forget them, as
	// the peer has counted them as dropped.
	Trimmed func()
}

// Backoff of reconnections.
const (
	retryMin = 200 * time.Millisecond
	retryMax = 5 * time.Second
	// idleTimeout: no frame (not even a keepalive) for this long means the
	// connection is dead.
	idleTimeout = 3 * KeepaliveInterval
	// mirrorBatch bounds the records written per mirror transaction.
	mirrorBatch = 1024
)

// Run tails until ctx is done.
func (t *Tailer) Run(ctx context.Context) {
	log := t.Logger.With("component", "peer-tailer", "peer", t.Node)
	backoff := retryMin
	for ctx.Err() == nil {
		addr, ok := t.Addr()
		var streamed bool
		var err error
		if ok {
			streamed, err = t.stream(ctx, addr, log)
		} else {
			err = errors.New("no address known yet")
		}
		if ctx.Err() != nil {
			return
		}
		if streamed {
			// The peer answered: a stream that ends (the peer restarts,
			// an idle connection is cut) is no reason to wait long.
			backoff = retryMin
		}
		log.Debug("peer stream ended; reconnecting", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, retryMax)
	}
}

// stream runs one connection; streamed says the peer answered with its log.
func (t *Tailer) stream(ctx context.Context, addr string, log *slog.Logger) (streamed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	scheme := t.Scheme
	if scheme == "" {
		scheme = "http"
	}
	m := t.Mirror
	url := fmt.Sprintf("%s://%s/internal/v1/log?from=%d&incarnation=%s", scheme, addr, m.LastSeq()+1, m.Incarnation())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+t.Token)
	resp, err := t.Client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("peer answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	inc := resp.Header.Get(HeaderIncarnation)
	first, _ := strconv.ParseUint(resp.Header.Get(HeaderFirstSeq), 10, 64)
	switch {
	case inc == "":
		return false, errors.New("peer sent no incarnation")
	case inc != m.Incarnation():
		log.Info("peer log is a new incarnation; starting a new copy", "old", m.Incarnation(), "new", inc)
		if err := m.Reset(inc); err != nil {
			return false, err
		}
	case m.LastSeq() >= m.FirstSeq() && first > m.LastSeq()+1:
		log.Warn("peer trimmed events before this node copied them; starting a new copy",
			"copied-up-to", m.LastSeq(), "peer-first", first)
		if err := m.Reset(inc); err != nil {
			return false, err
		}
		t.trimmed()
	}
	idle := time.AfterFunc(idleTimeout, cancel)
	defer idle.Stop()
	br := bufio.NewReaderSize(resp.Body, 256<<10)
	var batch []eventlog.Record
	for {
		rec, trimTo, err := readFrame(br)
		if err != nil {
			if len(batch) > 0 {
				_ = m.appendRecords(batch) // what arrived whole is kept
			}
			return true, err
		}
		idle.Reset(idleTimeout)
		if rec.Seq != 0 {
			batch = append(batch, rec)
		}
		// Write what has arrived when the stream pauses or the batch is
		// full, and before applying a trim notice.
		if len(batch) > 0 && (br.Buffered() == 0 || len(batch) >= mirrorBatch || trimTo != 0) {
			if err := m.appendRecords(batch); err != nil {
				return true, fmt.Errorf("copying into the mirror: %w", err)
			}
			batch = batch[:0]
		}
		if trimTo > m.FirstSeq() {
			st, err := m.Trim(trimTo, nil)
			if err != nil {
				return true, fmt.Errorf("trimming the mirror: %w", err)
			}
			if st.Deleted > 0 {
				t.trimmed()
			}
		}
	}
}

func (t *Tailer) trimmed() {
	if t.Trimmed != nil {
		t.Trimmed()
	}
}
