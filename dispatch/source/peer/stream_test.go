package peer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/store/eventlog"
)

// TestHandlerStreamsFromSeqThenLive: the stream starts at from (with the
// log's incarnation and the first seq sent in the headers), carries each
// record's seq, ingest time, model and body, and then follows appends
// live, including appends of many records in one transaction.
func TestHandlerStreamsFromSeqThenLive(t *testing.T) {
	clk := &clock{t: time.UnixMilli(1_700_000_000_000)}
	l := openLog(t, clk.now)
	for range 20 {
		clk.advance(7 * time.Millisecond)
		appendEvents(t, l, int(l.LastSeq())+1, 1)
	}
	p := newTestPeer(t, l)

	s := openStream(t, p, "from=8&incarnation="+l.Incarnation())
	if got := s.resp.Header.Get(HeaderIncarnation); got != l.Incarnation() {
		t.Errorf("%s = %q, want %q", HeaderIncarnation, got, l.Incarnation())
	}
	if ct := s.resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q, want %q", ct, ContentType)
	}
	if got := s.firstSeq(t); got != 8 {
		t.Errorf("%s = %d, want 8", HeaderFirstSeq, got)
	}
	want, _ := l.Read(8, 100)
	sameRecords(t, "stored records from 8", s.records(t, len(want)), want)

	// Live: single appends, then one transaction of 700 (more than the
	// server reads per batch).
	clk.advance(time.Second)
	appendEvents(t, l, 21, 3)
	clk.advance(time.Second)
	appendBatch(t, l, 24, 700)
	want, _ = l.Read(21, 1000)
	if len(want) != 703 {
		t.Fatalf("log holds %d records from 21, want 703", len(want))
	}
	sameRecords(t, "live records", s.records(t, len(want)), want)
}

// TestHandlerKeepaliveWhenIdle: an idle stream carries a keepalive frame
// every KeepaliveInterval, and a record appended afterwards still arrives.
func TestHandlerKeepaliveWhenIdle(t *testing.T) {
	l := openLog(t, nil)
	appendEvents(t, l, 1, 2)
	p := newTestPeer(t, l)
	s := openStream(t, p, "from=3&incarnation="+l.Incarnation())
	start := time.Now()
	for i := range 2 {
		rec, first, err := readFrame(s.br)
		if err != nil {
			t.Fatalf("keepalive %d: %v", i, err)
		}
		if rec.Seq != 0 || first != 0 {
			t.Fatalf("frame %d of an idle stream is record %d / notice %d, want a keepalive", i, rec.Seq, first)
		}
	}
	// Two keepalives take two intervals of silence.
	if el := time.Since(start); el < 2*KeepaliveInterval-300*time.Millisecond || el > 2*KeepaliveInterval+3*time.Second {
		t.Errorf("two keepalives took %s, want about %s", el, 2*KeepaliveInterval)
	}
	appendEvents(t, l, 3, 1)
	if rec := s.next(t); rec.Seq != 3 {
		t.Errorf("after the keepalives: record %d, want 3", rec.Seq)
	}
}

// TestHandlerStartingPoint: another incarnation (the asker's copy is of the
// peer's old self, or it has none), a missing or bad from, and a from
// older than what is stored all start at the first stored seq; a from past
// the end waits for that seq.
func TestHandlerStartingPoint(t *testing.T) {
	l := openLog(t, nil)
	appendEvents(t, l, 1, 30)
	if _, err := l.Trim(11, nil); err != nil { // keep 11..30
		t.Fatal(err)
	}
	p := newTestPeer(t, l)
	inc := l.Incarnation()
	for _, tc := range []struct {
		query string
		first uint64
	}{
		{"from=25&incarnation=" + inc, 25},
		{"from=25&incarnation=0123456789abcdef", 11}, // another incarnation: everything
		{"from=25", 11},                    // no incarnation: everything
		{"from=3&incarnation=" + inc, 11},  // trimmed: from the first stored
		{"incarnation=" + inc, 11},         // no from
		{"from=-4&incarnation=" + inc, 11}, // bad from
		{"from=x&incarnation=" + inc, 11},
	} {
		t.Run(tc.query, func(t *testing.T) {
			s := openStream(t, p, tc.query)
			if got := s.firstSeq(t); got != tc.first {
				t.Errorf("%s = %d, want %d", HeaderFirstSeq, got, tc.first)
			}
			if got := s.resp.Header.Get(HeaderIncarnation); got != inc {
				t.Errorf("%s = %q, want %q", HeaderIncarnation, got, inc)
			}
			want, _ := l.Read(tc.first, 1000)
			sameRecords(t, "records", s.records(t, len(want)), want)
		})
	}

	t.Run("from past the end", func(t *testing.T) {
		s := openStream(t, p, "from=33&incarnation="+inc)
		if got := s.firstSeq(t); got != 33 {
			t.Errorf("%s = %d, want 33", HeaderFirstSeq, got)
		}
		appendEvents(t, l, 31, 5) // seqs 31..35
		want, _ := l.Read(33, 10)
		sameRecords(t, "records from 33", s.records(t, 3), want)
	})
}

// TestHandlerRefusesOtherMethods: only GET streams the log.
func TestHandlerRefusesOtherMethods(t *testing.T) {
	l := openLog(t, nil)
	p := newTestPeer(t, l)
	req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/internal/v1/log?from=1", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodGet {
		t.Errorf("POST: %s, Allow %q; want 405 with Allow: GET", resp.Status, resp.Header.Get("Allow"))
	}
}

// TestHandlerEndsOnServerShutdown: a graceful Shutdown of the server does
// not wait for the streams (they never end by themselves) until its
// deadline: they end at once, cleanly.
func TestHandlerEndsOnServerShutdown(t *testing.T) {
	l := openLog(t, nil)
	appendEvents(t, l, 1, 3)
	p := newTestPeer(t, l)
	streams := []*stream{
		openStream(t, p, "from=1&incarnation="+l.Incarnation()),
		openStream(t, p, "from=4&incarnation="+l.Incarnation()),
	}
	streams[0].records(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.srv.Config.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with streams open: %v (after %s)", err, time.Since(start))
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("Shutdown took %s with streams open", el)
	}
	for i, s := range streams {
		for {
			rec, _, err := readFrame(s.br)
			if errors.Is(err, io.EOF) {
				break // the stream ended cleanly
			}
			if err != nil {
				t.Errorf("stream %d: %v, want a clean end", i, err)
				break
			}
			if rec.Seq != 0 {
				t.Errorf("stream %d: a record after the shutdown", i)
			}
		}
	}
}

// TestHandlerEndsWhenLogCloses: a stream waiting for new records ends when
// the log is closed (node shutdown) instead of spinning on it.
func TestHandlerEndsWhenLogCloses(t *testing.T) {
	l := openLog(t, nil)
	appendEvents(t, l, 1, 2)
	p := newTestPeer(t, l)
	s := openStream(t, p, "from=3&incarnation="+l.Incarnation())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, _, err := readFrame(s.br); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Errorf("stream after the log closed: %v, want a clean end", err)
		}
	case <-time.After(KeepaliveInterval + 3*time.Second):
		t.Fatal("the stream did not end after its log was closed")
	}
}

// frameBytes builds raw frame bytes.
func frameBytes(seq uint64, ingest int64, model string, bodyLen uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(ingest))
	b = append(b, byte(len(model)))
	b = append(b, model...)
	b = binary.BigEndian.AppendUint32(b, bodyLen)
	return append(b, body...)
}

// TestReadFrame: a frame written by appendFrame reads back the same, a
// keepalive and a trim notice are no record, and malformed input is an
// error, never a record: an oversized body length, truncation anywhere.
func TestReadFrame(t *testing.T) {
	recs := []eventlog.Record{
		{Seq: 1, IngestMs: 1_700_000_000_123, Model: "call", Body: []byte(`{"model":"call"}`)},
		{Seq: 1 << 40, IngestMs: -5, Model: strings.Repeat("m", eventlog.MaxModelLen), Body: bytes.Repeat([]byte("b"), 64<<10)},
		{Seq: 3, IngestMs: 0, Model: "", Body: []byte{}},
	}
	var wire []byte
	for i := range recs {
		wire = appendFrame(wire, &recs[i])
		wire = append(wire, make([]byte, frameHeader)...) // a keepalive after each
		wire = appendNotice(wire, uint64(100+i))          // and a trim notice
	}
	br := bufio.NewReader(bytes.NewReader(wire))
	for i := range recs {
		got, first, err := readFrame(br)
		if err != nil || got.Seq == 0 || first != 0 {
			t.Fatalf("frame %d: seq %d first %d err=%v", i, got.Seq, first, err)
		}
		sameRecords(t, "frame "+strconv.Itoa(i), []eventlog.Record{got}, recs[i:i+1])
		if rec, first, err := readFrame(br); rec.Seq != 0 || first != 0 || err != nil {
			t.Fatalf("keepalive after frame %d: seq %d first %d err=%v", i, rec.Seq, first, err)
		}
		if rec, first, err := readFrame(br); rec.Seq != 0 || first != uint64(100+i) || err != nil {
			t.Fatalf("trim notice after frame %d: seq %d first %d err=%v", i, rec.Seq, first, err)
		}
	}
	if _, _, err := readFrame(br); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}

	good := frameBytes(9, 1, "call", 4, []byte("body"))
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"body longer than any event", frameBytes(9, 1, "call", maxFrameBody+1, nil), errBadFrame},
		{"body length 4 GiB", frameBytes(9, 1, "call", 0xffffffff, []byte("short")), errBadFrame},
		{"cut in the header", good[:10], io.ErrUnexpectedEOF},
		{"cut after the header", good[:frameHeader], io.ErrUnexpectedEOF},
		{"cut after the model", good[:frameHeader+1+4], io.ErrUnexpectedEOF},
		{"cut after the body length", good[:frameHeader+1+4+4], io.ErrUnexpectedEOF},
		{"cut in the model", good[:frameHeader+3], io.ErrUnexpectedEOF},
		{"cut in the body length", good[:frameHeader+1+4+2], io.ErrUnexpectedEOF},
		{"cut in the body", good[:len(good)-1], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _, err := readFrame(bufio.NewReader(bytes.NewReader(tc.in)))
			if rec.Seq != 0 {
				t.Fatalf("malformed frame read as record %+v", rec)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestHandlerSendsTrimNotices: when retention trims the log, the stream
// says so (a trim notice with the new first seq) within trimPoll, before
// any later record; a stream opened on a trimmed log starts with one.
func TestHandlerSendsTrimNotices(t *testing.T) {
	l := openLog(t, nil)
	appendEvents(t, l, 1, 20)
	p := newTestPeer(t, l)
	s := openStream(t, p, "from=1&incarnation="+l.Incarnation())
	s.records(t, 20)
	if _, err := l.Trim(15, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		rec, first, err := readFrame(s.br)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Seq != 0 {
			t.Fatalf("record %d before the trim notice", rec.Seq)
		}
		if first != 0 {
			if first != 15 {
				t.Fatalf("trim notice says %d, want 15", first)
			}
			break
		}
	}
	if el := time.Since(start); el > trimPoll+time.Second {
		t.Errorf("trim notice after %s, want within about %s", el, trimPoll)
	}
	appendEvents(t, l, 21, 1)
	if rec := s.next(t); rec.Seq != 21 {
		t.Errorf("after the notice: record %d, want 21", rec.Seq)
	}

	// Opened on the trimmed log, from before its start: the notice first.
	s2 := openStream(t, p, "from=3&incarnation="+l.Incarnation())
	rec, first, err := readFrame(s2.br)
	if err != nil || rec.Seq != 0 || first != 15 {
		t.Fatalf("first frame of a stream on a trimmed log: seq %d first %d err %v, want a trim notice 15", rec.Seq, first, err)
	}
	want, _ := l.Read(15, 100)
	sameRecords(t, "records after the notice", s2.records(t, len(want)), want)
}
