package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/httpapi/client"
)

// TestClientStream: a stream with a model and a property filter replays
// the log from Since and returns only the matching events, in order; a
// wrong token is an API error 401; Tail stops with nil when its context
// ends.
func TestClientStream(t *testing.T) {
	t.Parallel()
	n, c := mustStartNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	since := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	res, err := c.Ingest(ctx, []map[string]any{
		{"model": "cdr", "domain": "a.example", "n": 1},
		{"model": "call", "domain": "b.example", "n": 2},
		{"model": "call", "domain": "a.example", "n": 3},
		{"model": "call", "domain": "a.example", "n": 4},
	})
	if err != nil || res.Accepted != 4 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	s, err := c.Stream(ctx, client.StreamOptions{Models: []string{"call"}, Filters: []match.Filter{{Property: "domain", Value: "a.example"}}, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, want := range []int{3, 4} {
		ev, err := s.Next(ctx)
		if err != nil {
			t.Fatalf("next (want n=%d): %v", want, err)
		}
		var got struct {
			N      int    `json:"n"`
			Model  string `json:"model"`
			Domain string `json:"domain"`
		}
		if err := json.Unmarshal(ev, &got); err != nil || got.N != want || got.Model != "call" || got.Domain != "a.example" {
			t.Fatalf("event %s (err %v), want n=%d", ev, err, want)
		}
	}

	bad := client.New(n.HTTPAddr(), "wrong-token")
	if _, err := bad.Stream(ctx, client.StreamOptions{}); client.StatusOf(err) != 401 {
		t.Fatalf("stream with a wrong token: %v, want a 401 API error", err)
	}

	tctx, tcancel := context.WithCancel(ctx)
	got := 0
	err = c.Tail(tctx, client.StreamOptions{Since: since}, func(json.RawMessage) error {
		got++
		if got == 4 {
			tcancel()
		}
		return nil
	})
	if err != nil || got != 4 {
		t.Fatalf("tail: %d events, err %v; want 4 and nil after cancel", got, err)
	}
	stop := errors.New("enough")
	if err := c.Tail(ctx, client.StreamOptions{Since: since}, func(json.RawMessage) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("tail with a failing callback: %v", err)
	}
}
