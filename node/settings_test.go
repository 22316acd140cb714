package node

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var updateDoc = flag.Bool("update", false, "rewrite docs/configuration.md's settings tables")

//go:generate go test -run ^TestSettingsDoc$ . -args -update

// TestSettingsDoc fails when docs/configuration.md's settings tables do
// not match Settings; `go generate ./node` rewrites them.
func TestSettingsDoc(t *testing.T) {
	path := filepath.Join("..", "docs", "configuration.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := UpdateSettingsDoc(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if !changed {
		return
	}
	if *updateDoc {
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", path)
		return
	}
	t.Fatalf("%s is stale: its settings tables do not match node.Settings; run `go generate ./node` and commit the result", path)
}

func TestSettingsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Settings {
		if seen[s.Name] {
			t.Errorf("setting %q twice", s.Name)
		}
		seen[s.Name] = true
		if !slices.Contains(SettingGroups, s.Group) {
			t.Errorf("%s: group %q is not in SettingGroups", s.Name, s.Group)
		}
		if s.Help == "" || s.Set == nil || s.Get == nil || s.Type == "" {
			t.Errorf("%s: incomplete row %+v", s.Name, s)
		}
		// The default reads back as itself: Get and Set agree.
		c := Config{}
		if err := s.Set(&c, s.Default()); err != nil {
			t.Errorf("%s: default %q does not parse: %v", s.Name, s.Default(), err)
		} else if got := s.Get(&c); got != s.Default() {
			t.Errorf("%s: default %q reads back as %q", s.Name, s.Default(), got)
		}
	}
}

func TestSettingsDefaultsFromConstants(t *testing.T) {
	for name, want := range map[string]string{
		"retention-bytes": "2GiB", "retention": "72h", "stable-after": "1m", "report-interval": "1s",
		"ingest-allow": DefaultAllowLoopback, "api-rate": "50:200", "ingest-rate": "5000:10000",
		"data-dir": DefaultDataDir, "http-addr": DefaultHTTPAddr, "read-timeout": "10s", "join": "", "bootstrap": "false",
	} {
		s, ok := LookupSetting(name)
		if !ok {
			t.Fatalf("no setting %q", name)
		}
		if got := s.Default(); got != want {
			t.Errorf("%s: default %q, want %q", name, got, want)
		}
	}
	if s, _ := LookupSetting("lease"); s.EnvName() != "HOOKSWITCH_LEASE" {
		t.Errorf("env name %q", s.EnvName())
	}
	if s, _ := LookupSetting("raft-heartbeat-timeout"); s.EnvName() != "HOOKSWITCH_RAFT_HEARTBEAT_TIMEOUT" {
		t.Errorf("env name %q", s.EnvName())
	}
}

func TestSettingValues(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
		check    func(c Config) bool
	}{
		{"retention-bytes", "512MiB", true, func(c Config) bool { return c.RetentionBytes == 512<<20 }},
		{"retention-bytes", "12", true, func(c Config) bool { return c.RetentionBytes == 12 }},
		{"retention-bytes", "2GB", false, nil},
		{"retention-bytes", "99999999999TiB", false, nil},
		{"lease", "2s", true, func(c Config) bool { return c.Lease == 2*time.Second }},
		{"lease", "2", false, nil},
		{"bootstrap", "true", true, func(c Config) bool { return c.Bootstrap }},
		{"bootstrap", "yes", false, nil},
		{"join", "a:1, b:2,", true, func(c Config) bool { return slices.Equal(c.Join, []string{"a:1", "b:2"}) }},
		{"ws-allow", "10.0.0.0/8,192.0.2.1", true, func(c Config) bool { return FormatCIDRs(c.WSAllow) == "10.0.0.0/8,192.0.2.1" }},
		{"ws-allow", "10.0.0.0/33", false, nil},
		{"api-rate", "0", true, func(c Config) bool { return !c.APIRate.Enabled() }},
		{"api-rate", "x", false, nil},
	} {
		s, _ := LookupSetting(tc.name)
		c := Default()
		err := s.Set(&c, tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s=%q: err %v, want ok=%v", tc.name, tc.in, err, tc.ok)
			continue
		}
		if tc.ok && !tc.check(c) {
			t.Errorf("%s=%q: got %q", tc.name, tc.in, s.Get(&c))
		}
	}
}

// TestUpdateSettingsDoc: a doc whose block differs from the table is
// rewritten (and reported changed); a doc without a group's block is an
// error naming the group.
func TestUpdateSettingsDoc(t *testing.T) {
	var doc string
	for _, g := range SettingGroups {
		doc += "## " + g + "\n" + SettingsDocBegin + `"` + g + `"` + SettingsDocMarkerEnd + "\n| stale |\n" + SettingsDocEnd + "\nprose stays\n"
	}
	out, changed, err := UpdateSettingsDoc(doc)
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if again, changed, err := UpdateSettingsDoc(out); err != nil || changed || again != out {
		t.Fatalf("a fresh doc: changed %v, err %v", changed, err)
	}
	for _, want := range []string{"| `retention-bytes` | `2GiB` |", "prose stays", "| `stable-after` | `1m` (dev: `0s`) |"} {
		if !strings.Contains(out, want) {
			t.Errorf("rewritten doc lacks %q", want)
		}
	}
	if strings.Contains(out, "| stale |") {
		t.Errorf("stale row kept")
	}
	if _, _, err := UpdateSettingsDoc("no blocks"); !errors.Is(err, ErrStaleDoc) || !strings.Contains(err.Error(), SettingGroups[0]) {
		t.Fatalf("doc without blocks: %v", err)
	}
}

// TestStartWithoutBootstrapOrJoin: a node with an empty data dir and
// neither bootstrap nor join runs (waiting for `hookswitch join`), is not
// ready, and its readiness names what to run.
func TestStartWithoutBootstrapOrJoin(t *testing.T) {
	cfg := Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr = "127.0.0.1:0", "127.0.0.1:0"
	var logs strings.Builder
	n, err := Start(cfg, "test", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	}()
	if !n.Unjoined() {
		t.Fatal("Unjoined: false for a node in no cluster")
	}
	err = n.Ready()
	if !errors.Is(err, ErrNoCluster) {
		t.Fatalf("Ready: %v, want ErrNoCluster", err)
	}
	for _, want := range []string{"hookswitch join HTTP_ADDR", "--join HTTP_ADDR", "--bootstrap"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Ready's reason %q lacks %q", err, want)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "in no cluster yet") {
		t.Errorf("no warning naming the situation in the log:\n%s", logs.String())
	}
}

func TestIntBinding(t *testing.T) {
	var n int
	b := Int(func(*Config) *int { return &n })
	for _, bad := range []string{"", "x", "-1", "1.5"} {
		if err := b.Set(&Config{}, bad); !errors.Is(err, ErrConfig) {
			t.Errorf("Int %q: err %v, want ErrConfig", bad, err)
		}
	}
	if err := b.Set(&Config{}, " 1000 "); err != nil || n != 1000 || b.Get(&Config{}) != "1000" {
		t.Fatalf("Int 1000: n %d, err %v", n, err)
	}
}

func TestQuietNormalStart(t *testing.T) {
	for _, c := range []struct {
		msg   string
		args  []any
		quiet bool
	}{
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "", "last-leader-id", ""}, true},
		{"heartbeat timeout reached, starting election", []any{"last-leader-addr", "10.0.0.1:7481", "last-leader-id", "n1"}, false},
		{"failed to get previous log", []any{"previous-index", uint64(3), "last-index", uint64(0), "error", "log not found"}, true},
		{"failed to get previous log", []any{"previous-index", uint64(30), "last-index", uint64(12), "error", "log not found"}, false},
		{"appendEntries rejected, sending older logs", []any{"peer", "n2", "next", uint64(1)}, true},
		{"appendEntries rejected, sending older logs", []any{"peer", "n2", "next", uint64(17)}, false},
		{"failed to contact quorum of nodes, stepping down", nil, false},
		{"no known peers, aborting election", nil, false}, // a node with state
	} {
		if got := (&Node{}).quietNormalStart(0, c.msg, c.args...); got != c.quiet {
			t.Errorf("%q %v: quiet %v, want %v", c.msg, c.args, got, c.quiet)
		}
	}
}

func TestQuietNormalStartFreshNode(t *testing.T) {
	if !(&Node{fresh: true}).quietNormalStart(0, "no known peers, aborting election") {
		t.Fatal("a fresh node's no-peers warning is not quieted")
	}
}
