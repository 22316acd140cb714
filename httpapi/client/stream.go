package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/httpapi"
)

// StreamOptions choose what a websocket stream delivers (docs/websocket.md).
type StreamOptions struct {
	// Models become the ?model= query: the connection's first filter.
	Models []string
	// Filters are sent as the connection's filter message (models are
	// added to them as model filters).
	Filters []match.Filter
	// Since replays from an event-id or an RFC 3339 time before going
	// live (?since=).
	Since string
	// ReadLimit is the largest frame accepted (default 1 MiB).
	ReadLimit int64
}

// ErrFiltersRefused: the node answered the filter message with an error.
var ErrFiltersRefused = errors.New("the node refused the filters")

// ErrStreamClosed: the node closed the stream (a slow client, a node
// shutting down); the error names the close code and reason.
var ErrStreamClosed = errors.New("the node closed the stream")

// Stream is an open websocket event stream of one node (GET /v1/events/ws).
type Stream struct {
	conn *websocket.Conn
	fs   match.FilterSet
}

// streamCorrelation is the correlationId of the stream's filter message.
const streamCorrelation = "hookswitch-client"

// Stream opens the node's websocket event stream with the client's token
// and TLS settings, and sends the filters. Events are also matched here,
// so events the node sent before it confirmed the filters (a Since replay
// starts at once) are not returned either.
func (c *Client) Stream(ctx context.Context, o StreamOptions) (*Stream, error) {
	var fl []match.Filter
	for _, m := range o.Models {
		if m = strings.TrimSpace(m); m != "" {
			fl = append(fl, match.Filter{Property: "model", Value: m})
		}
	}
	fl = append(fl, o.Filters...)
	fs, err := match.NewFilterSet(fl)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(c.base + httpapi.WSPath)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", c.base, err)
	}
	q := u.Query()
	if len(o.Models) > 0 {
		q.Set("model", strings.Join(o.Models, ","))
	}
	if o.Since != "" {
		q.Set("since", o.Since)
	}
	u.RawQuery = q.Encode()
	switch u.Scheme {
	case "https":
		u.Scheme = "wss"
	case "http":
		u.Scheme = "ws"
	}
	hdr := http.Header{}
	if c.token != "" {
		hdr.Set("Authorization", "Bearer "+c.token)
	}
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPHeader: hdr, HTTPClient: c.http})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			e := &Error{Status: resp.StatusCode}
			if resp.Body != nil {
				_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(e)
			}
			if e.Message == "" {
				e.Message = resp.Status
			}
			return nil, fmt.Errorf("%s: %w", u.Redacted(), e)
		}
		return nil, err
	}
	limit := o.ReadLimit
	if limit <= 0 {
		limit = 1 << 20
	}
	conn.SetReadLimit(limit)
	if len(fl) > 0 {
		msg, _ := json.Marshal(map[string]any{"type": "filter", "correlationId": streamCorrelation, "filters": fl})
		if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
			conn.CloseNow()
			return nil, err
		}
	}
	return &Stream{conn: conn, fs: fs}, nil
}

// Next returns the next event that matches the filters, as the node sent
// it (one JSON object). It returns ErrFiltersRefused when the node refused
// the filters, an error wrapping ErrStreamClosed when the node closed the
// stream, and ctx's error when ctx ends.
func (s *Stream) Next(ctx context.Context) (json.RawMessage, error) {
	for {
		_, data, err := s.conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if code := websocket.CloseStatus(err); code != -1 {
				var ce websocket.CloseError
				errors.As(err, &ce)
				return nil, fmt.Errorf("%w: %d %s", ErrStreamClosed, int(code), ce.Reason)
			}
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var obj map[string]any
		if dec.Decode(&obj) != nil {
			continue
		}
		if _, isEvent := obj["event-id"]; !isEvent {
			if obj["correlationId"] == streamCorrelation && obj["type"] == "error" {
				return nil, fmt.Errorf("%w: %v", ErrFiltersRefused, obj["error"])
			}
			continue // the success reply, or a message newer than this client
		}
		if s.fs.Match(obj) {
			return data, nil
		}
	}
}

// Close closes the stream normally.
func (s *Stream) Close() error { return s.conn.Close(websocket.StatusNormalClosure, "") }

// Tail calls fn with every matching event until ctx ends (then it returns
// nil), fn fails, or the stream fails.
func (c *Client) Tail(ctx context.Context, o StreamOptions, fn func(event json.RawMessage) error) error {
	s, err := c.Stream(ctx, o)
	if err != nil {
		return err
	}
	defer s.conn.CloseNow()
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_ = s.Close()
				return nil
			}
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}
