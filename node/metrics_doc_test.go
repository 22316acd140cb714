package node

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMetricsDoc fails when a node's /metrics exports a hookswitch_*
// series that docs/metrics.md does not name (in backquotes), so the list
// there grows with node/metrics.go.
func TestMetricsDoc(t *testing.T) {
	cfg := Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Bootstrap = true
	// A PBX source (nothing listens there: it keeps retrying) so the
	// per-source series are exported too.
	cfg.Sources = []string{"http", "kamailio://127.0.0.1:1"}
	n, err := Start(cfg, "test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	}()
	rec := httptest.NewRecorder()
	n.metricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	exported := metricFamilies(rec.Body.String())
	if len(exported) == 0 {
		t.Fatalf("no hookswitch_ series in:\n%s", rec.Body.String())
	}

	path := filepath.Join("..", "docs", "metrics.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(hookswitch_[a-z0-9_]+)`").FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	for _, name := range exported {
		if !documented[name] {
			t.Errorf("%s does not name the series %s that /metrics exports: add a row for it", path, name)
		}
	}
}

// metricFamilies lists the hookswitch_* families (their # TYPE lines) of a
// Prometheus text exposition.
func metricFamilies(exposition string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "hookswitch_") && !slices.Contains(out, f[2]) {
			out = append(out, f[2])
		}
	}
	return out
}
