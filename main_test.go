package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/node"
)

// agentCfg parses an agent command line as `hookswitch agent` does.
func agentCfg(t *testing.T, args ...string) (node.Config, error) {
	t.Helper()
	cmd := newAgentCmd()
	if err := cmd.ParseFlags(args); err != nil {
		return node.Config{}, err
	}
	if err := applyEnvAndFile(cmd.LocalFlags()); err != nil {
		return node.Config{}, err
	}
	return agentConfig(cmd.LocalFlags())
}

// TestAgentSettingsPrecedence: flag, then env, then file, then default,
// for every kind of setting in node.Settings.
func TestAgentSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hs.toml")
	if err := os.WriteFile(file, []byte(`
lease = "2s"
down-after = "9s"
retention-bytes = "1GiB"
join = ["10.0.0.1:7480", "10.0.0.2:7480"]
ws-allow = "10.0.0.0/8"
api-rate = "7:9"
witness = true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOOKSWITCH_DOWN_AFTER", "8s")
	t.Setenv("HOOKSWITCH_RETENTION_BYTES", "512MiB")
	cfg, err := agentCfg(t, "--config", file, "--retention-bytes", "64KiB")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"lease (file)", cfg.Lease, 2 * time.Second},
		{"down-after (env over file)", cfg.DownAfter, 8 * time.Second},
		{"retention-bytes (flag over env and file)", cfg.RetentionBytes, int64(64 << 10)},
		{"join (file list)", strings.Join(cfg.Join, ","), "10.0.0.1:7480,10.0.0.2:7480"},
		{"ws-allow (file)", node.FormatCIDRs(cfg.WSAllow), "10.0.0.0/8"},
		{"api-rate (file)", node.FormatRate(cfg.APIRate), "7:9"},
		{"witness (file bool)", cfg.Witness, true},
		{"report-interval (default)", cfg.ReportInterval, node.DefaultReportInterval},
		{"retention (default)", cfg.Retention, node.DefaultRetention},
		{"ingest-allow (default)", node.FormatCIDRs(cfg.IngestAllow), node.DefaultAllowLoopback},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestAgentSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		file string
		env  [2]string
		args []string
		want string
	}{
		{name: "bad flag", args: []string{"--lease", "soon"}, want: "lease"},
		{name: "bad env", env: [2]string{"HOOKSWITCH_RETENTION_BYTES", "2GB"}, want: "HOOKSWITCH_RETENTION_BYTES"},
		{name: "bad file value", file: `ws-allow = "nope"`, want: "config ws-allow"},
		{name: "unknown key", file: `leese = "1s"`, want: `unknown setting "leese"`},
		{name: "config key in file", file: `config = "x"`, want: `unknown setting "config"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".toml")
			if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.env[0] != "" {
				t.Setenv(tc.env[0], tc.env[1])
			}
			_, err := agentCfg(t, append([]string{"--config", file}, tc.args...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestAgentDevDefaults(t *testing.T) {
	cfg, err := agentCfg(t, "--config", os.DevNull, "--dev", "--raft-addr", "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Bootstrap || cfg.DataDir != node.DefaultDevDataDir || cfg.HTTPAddr != node.DevHTTPAddr || cfg.RaftAddr != "127.0.0.1:9" || cfg.StableAfter != 0 {
		t.Fatalf("dev config %+v", cfg)
	}
}
