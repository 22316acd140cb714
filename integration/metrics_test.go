package integration

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// metricsWait bounds the wait for every series the dashboard names (the
// per-subscription ones appear with the first POSTs).
const metricsWait = time.Minute

// dashboardFile is the Grafana dashboard of docs/.
const dashboardFile = "../docs/grafana-dashboard.json"

// metricName finds the series names in a PromQL expression: ours, and
// the client library's process and Go series.
var metricName = regexp.MustCompile(`\b(?:hookswitch|process|go)_[a-zA-Z0-9_]+\b`)

// dashboardQueries returns every query of the dashboard file (panels,
// rows' panels, and template variables).
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []panel `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q has a target without a query", p.Title)
				}
				out = append(out, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok && v.Type == "query" {
			out = append(out, q)
		}
	}
	return out
}

// scrapeNames returns the sample names of a /metrics answer (histograms
// as name_bucket, name_sum and name_count).
func scrapeNames(nd *harness.Node) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, nd.BaseURL()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := nd.HTTPClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for line := range strings.Lines(string(body)) {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, nil
}

// TestDashboardMetrics: every query of docs/grafana-dashboard.json names
// only series that a live node's /metrics has, once it has ingested,
// delivered and failed deliveries.
func TestDashboardMetrics(t *testing.T) {
	queries := dashboardQueries(t)
	if len(queries) < 10 {
		t.Fatalf("the dashboard has %d queries; expected its panels' queries", len(queries))
	}
	wanted := map[string][]string{} // series → queries naming it
	for _, q := range queries {
		ms := metricName.FindAllString(q, -1)
		if len(ms) == 0 {
			t.Errorf("query %q names no metric", q)
		}
		for _, m := range ms {
			wanted[m] = append(wanted[m], q)
		}
	}

	nd := harness.StartDev(t)
	ok := harness.NewReceiver(t, harness.ReceiverOptions{})
	bad := harness.NewReceiver(t, harness.ReceiverOptions{Answer: func(int, *http.Request) (int, bool) {
		return http.StatusInternalServerError, false
	}})
	createSubOn(t, nd, client.Fields{"model": "call", "domain": "metrics.example", "post-url": ok.URL()})
	createSubOn(t, nd, client.Fields{"model": "call", "domain": "metrics.example", "post-url": bad.URL()})
	ids := mustIngestSeq(t, nd, "metrics.example", 0, 3)
	ok.WaitIDs(t, ids, metricsWait)

	var missing []string
	deadline := time.Now().Add(metricsWait)
	for {
		names, err := scrapeNames(nd)
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		missing = missing[:0]
		for m := range wanted {
			if !names[m] {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // polling a scrape, not synchronising
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("the dashboard names %s, which /metrics does not export (in %q)", m, wanted[m][0])
	}
	// The series DESIGN lists are among the dashboard's.
	for _, m := range []string{
		"hookswitch_ingest_requests_total", "hookswitch_ingest_events_total", "hookswitch_ingest_ack_seconds_bucket",
		"hookswitch_event_log_first_seq", "hookswitch_event_log_last_seq", "hookswitch_event_log_bytes",
		"hookswitch_subscription_delivered_events_total", "hookswitch_subscription_failed_posts_total",
		"hookswitch_subscription_lag_events", "hookswitch_subscription_delivery_seconds_bucket",
		"hookswitch_websocket_connections", "hookswitch_websocket_slow_disconnects_total",
		"hookswitch_reassignments_total", "hookswitch_node_health_transitions_total",
	} {
		if _, ok := wanted[m]; !ok {
			t.Errorf("the dashboard has no panel for %s", m)
		}
	}
	if t.Failed() {
		keys := make([]string, 0, len(wanted))
		for k := range wanted {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		t.Logf("dashboard series: %v", keys)
	}
}
