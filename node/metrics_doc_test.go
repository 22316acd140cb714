package node

import (
	"bufio"
	"context"
	"fmt"
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

//go:generate go test -run ^TestMetricsDoc$ . -args -update

// The metrics table of docs/metrics.md sits between these markers.
const (
	metricsDocBegin = "<!-- generated: metrics (go generate ./node; do not edit) -->"
	metricsDocEnd   = "<!-- end generated -->"
)

// TestMetricsDoc fails when docs/metrics.md's table does not list exactly
// the hookswitch_* series a node's /metrics exports, with their type and
// help; `go generate ./node` rewrites it.
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
	table := metricsTable(t, rec.Body.String())

	path := filepath.Join("..", "docs", "metrics.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, metricsDocBegin)
	j := strings.Index(doc, metricsDocEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q … %q block", path, metricsDocBegin, metricsDocEnd)
	}
	out := doc[:i+len(metricsDocBegin)] + "\n" + table + doc[j:]
	if out == doc {
		return
	}
	if *updateDoc {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", path)
		return
	}
	t.Fatalf("%s is stale: its table does not match what /metrics exports; run `go generate ./node` and commit the result", path)
}

// metricsTable is the Markdown table of the hookswitch_* families in a
// Prometheus text exposition, in its order.
func metricsTable(t *testing.T, exposition string) string {
	type fam struct {
		name, typ, help string
		labels          []string
	}
	var fams []*fam
	byName := map[string]*fam{}
	get := func(name string) *fam {
		if f, ok := byName[name]; ok {
			return f
		}
		f := &fam{name: name}
		byName[name] = f
		fams = append(fams, f)
		return f
	}
	labelRe := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	sc := bufio.NewScanner(strings.NewReader(exposition))
	for sc.Scan() {
		line := sc.Text()
		if name, rest, ok := strings.Cut(line, "{"); ok && strings.HasPrefix(name, "hookswitch_") {
			// A sample of a known family, or of a histogram's or
			// summary's _bucket, _sum or _count series (its HELP and
			// TYPE come first in the exposition).
			f, known := byName[name]
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if !known {
					f, known = byName[strings.TrimSuffix(name, suffix)]
				}
			}
			if !known {
				continue
			}
			for _, m := range labelRe.FindAllStringSubmatch(rest, -1) {
				if !slices.Contains(f.labels, m[1]) {
					f.labels = append(f.labels, m[1])
				}
			}
			continue
		}
		var kind, name, rest string
		parts := strings.SplitN(line, " ", 4)
		if len(parts) < 4 || parts[0] != "#" {
			continue
		}
		kind, name, rest = parts[1], parts[2], parts[3]
		if !strings.HasPrefix(name, "hookswitch_") {
			continue
		}
		switch kind {
		case "HELP":
			get(name).help = rest
		case "TYPE":
			get(name).typ = rest
		}
	}
	if len(fams) == 0 {
		t.Fatalf("no hookswitch_ metrics in:\n%s", exposition)
	}
	var b strings.Builder
	b.WriteString("| metric | type | labels | meaning |\n|---|---|---|---|\n")
	for _, f := range fams {
		labels := make([]string, 0, len(f.labels))
		for _, l := range f.labels {
			if l != "le" {
				labels = append(labels, "`"+l+"`")
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.name, f.typ, strings.Join(labels, ", "), strings.ReplaceAll(f.help, "|", `\|`))
	}
	return b.String()
}
