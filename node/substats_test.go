package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/httpapi"
)

func TestRemoteSubStats(t *testing.T) {
	full := httpapi.StatsView{ID: "s", Node: "n2", Minutes: make([]stats.Minute, stats.Window)}
	full.Minutes[stats.Window-1].Delivered = 7
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"answer", func(w http.ResponseWriter, _ *http.Request) { _ = json.NewEncoder(w).Encode(full) }, ""},
		{"error status", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) }, "owner answered 403"},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>")) }, "owner's answer"},
		{"short", func(w http.ResponseWriter, _ *http.Request) {
			_ = json.NewEncoder(w).Encode(httpapi.StatsView{ID: "s", Minutes: make([]stats.Minute, 3)})
		}, "has 3 minutes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotAuth, gotPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotAuth, gotPath = r.Header.Get("Authorization"), r.URL.Path
				tc.handler(w, r)
			}))
			defer srv.Close()
			n := &Node{forwarder: &http.Client{Timeout: 5 * time.Second}, nodeToken: "node-secret"}
			v, err := n.remoteSubStats(context.Background(), strings.TrimPrefix(srv.URL, "http://"), "s")
			if gotAuth != "Bearer node-secret" || gotPath != "/internal/v1/subscriptions/s/stats" {
				t.Errorf("request: Authorization %q, path %q", gotAuth, gotPath)
			}
			if tc.wantErr == "" {
				if err != nil || v.Node != "n2" || v.Minutes[stats.Window-1].Delivered != 7 {
					t.Fatalf("got %+v, %v; want n2's view", v, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "node-secret") {
				t.Fatalf("the error shows the node token: %v", err)
			}
		})
	}
	n := &Node{forwarder: http.DefaultClient}
	if _, err := n.remoteSubStats(context.Background(), "", "s"); err == nil {
		t.Fatal("no address: want an error")
	}
}

func TestOwnerSubStatsFallsBack(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	n := &Node{id: "n1", subStats: stats.New(nil), forwarder: http.DefaultClient, log: slog.New(slog.DiscardHandler)}
	n.subStats.Failed("s")
	for _, addr := range []string{strings.TrimPrefix(srv.URL, "http://"), ""} {
		v := n.ownerSubStats(context.Background(), "s", "n2", addr)
		var f uint64
		for _, m := range v.Minutes {
			f += m.Failed
		}
		if v.Node != "n1" || f != 1 || !strings.Contains(v.Note, "n2 could not be asked") {
			t.Errorf("owner at %q unreachable: node %q, %d failed, note %q; want n1's own counts with a note", addr, v.Node, f, v.Note)
		}
	}
}

func TestInternalSubStats(t *testing.T) {
	n := &Node{id: "n1", subStats: stats.New(nil)}
	n.subStats.Delivered("a", 2)
	h := n.internalSubStats()
	tests := []struct {
		path      string
		code      int
		delivered uint64
	}{
		{"/internal/v1/subscriptions/a/stats", http.StatusOK, 2},
		{"/internal/v1/subscriptions/other/stats", http.StatusOK, 0},
		{"/internal/v1/subscriptions//stats", http.StatusBadRequest, 0},
		{"/internal/v1/subscriptions/a/b/stats", http.StatusBadRequest, 0},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("%s: code %d, want %d", tc.path, rec.Code, tc.code)
			continue
		}
		if tc.code != http.StatusOK {
			continue
		}
		var v httpapi.StatsView
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		var d uint64
		for _, m := range v.Minutes {
			d += m.Delivered
		}
		if v.Node != "n1" || d != tc.delivered || len(v.Minutes) != stats.Window {
			t.Errorf("%s: node %q, %d delivered, %d minutes; want n1, %d, %d", tc.path, v.Node, d, len(v.Minutes), tc.delivered, stats.Window)
		}
	}
}
