// Command hookswitch delivers a PBX cluster's telephony events to webhooks
// and websocket clients. This file is the command line only: it parses
// flags, environment and the config file, and calls into the packages.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/coder/websocket"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hookswitch/hookswitch/dispatch/match"
	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/fsm/backup"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/node"
	"github.com/hookswitch/hookswitch/node/demo"
	"github.com/hookswitch/hookswitch/node/pki"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultConfigFile = "/etc/hookswitch/hookswitch.toml"
	defaultAddr       = "http://127.0.0.1:7480"
	devHTTPAddr       = "127.0.0.1:7480"
	devRaftAddr       = "127.0.0.1:7481"
	envPrefix         = "HOOKSWITCH_"
)

func main() {
	if err := newRoot(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hookswitch:", err)
		os.Exit(1)
	}
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "hookswitch",
		Short:         "Replicated event delivery for PBX clusters: webhooks and websockets",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	cf := &clientFlags{}
	root.PersistentFlags().StringVar(&cf.addr, "addr", "", "node to talk to (env HOOKSWITCH_ADDR; default "+defaultAddr+")")
	root.PersistentFlags().StringVar(&cf.token, "token", "", "API token (env HOOKSWITCH_TOKEN; default: the local data dir's root-token)")
	root.PersistentFlags().StringVar(&cf.dataDir, "client-data-dir", "", "data dir whose root-token the client may read (default ./hookswitch-data, then "+node.DefaultDataDir+")")
	root.PersistentFlags().BoolVar(&cf.json, "json", false, "print JSON instead of a table")
	root.PersistentFlags().StringVar(&cf.ca, "ca", "", "CA certificate to verify an https node with instead of the system roots (env HOOKSWITCH_CA), e.g. the cluster's ca.crt")
	root.PersistentFlags().StringVar(&cf.cert, "cert", "", "client certificate to present (a node's, for join on a cluster with mutual TLS)")
	root.PersistentFlags().StringVar(&cf.key, "key", "", "key of --cert")
	root.AddCommand(newAgentCmd(), newSubCmd(cf), newTokenCmd(cf), newStatusCmd(cf), newTailCmd(cf), newTLSCmd())
	root.AddCommand(newClusterCmds(cf)...)
	root.AddCommand(newSnapshotCmd(cf))
	root.AddCommand(newConfigExampleCmd()) // hidden: configexample.go
	root.AddCommand(newDemoCmd())
	return root
}

// ---- agent ----

func newAgentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a hookswitch node",
		Args:  cobra.NoArgs,
	}
	d := node.Default()
	f := cmd.Flags()
	f.String("config", defaultConfigFile, "TOML config file (missing is fine unless set explicitly)")
	f.Bool("dev", false, "single-node cluster on 127.0.0.1 with data in ./hookswitch-data; prints the root token")
	f.String("node-id", "", "this node's id (default: hostname, persisted in <data-dir>/node-id)")
	f.String("data-dir", d.DataDir, "data directory")
	f.String("http-addr", d.HTTPAddr, "HTTP listen address (API, ingest, websocket, metrics)")
	f.String("raft-addr", d.RaftAddr, "raft listen address")
	f.String("advertise-http", "", "HTTP address other nodes use (default: http-addr)")
	f.String("advertise-raft", "", "raft address other nodes use (default: raft-addr)")
	f.Bool("bootstrap", false, "create a new cluster with this node as its first member")
	f.String("join", "", "comma-separated HTTP addresses of cluster members to join")
	f.Bool("witness", false, "vote in raft but never send subscriptions")
	f.String("restore", "", "with --bootstrap, in an empty data dir: start the new cluster with the state of this snapshot file (`hookswitch snapshot save`)")
	f.Int("voters", d.Voters, "raft voters at most (witnesses count); further nodes join as non-voters")
	f.Duration("report-interval", d.ReportInterval, "node report period")
	f.Duration("down-after", d.DownAfter, "no committed report for this long: node down")
	f.Duration("stable-after", d.StableAfter, "continuously up this long: node stable")
	f.Duration("lease", d.Lease, "stop sending when the last committed report is older (< down-after)")
	f.Duration("raft-heartbeat-timeout", d.RaftHeartbeatTimeout, "raft heartbeat timeout")
	f.Duration("raft-election-timeout", d.RaftElectionTimeout, "raft election timeout")
	f.Duration("retention", d.Retention, "event log age limit")
	f.String("retention-bytes", "2GiB", "event log size limit (bytes, or with KiB/MiB/GiB)")
	f.Duration("suspend-after", d.SuspendAfter, "continuous failure for this long: suspended")
	f.Duration("trim-interval", d.TrimInterval, "how often the local event log is trimmed")
	f.String("ingest-allow", node.DefaultAllowLoopback, "CIDRs that may ingest without a token")
	f.String("ws-allow", node.DefaultAllowLoopback, "CIDRs that may open a websocket")
	f.String("post-url-deny", "", "extra CIDRs a post-url may not resolve to (link-local and metadata are always denied unless allowed)")
	f.String("post-url-allow", "", "CIDRs a post-url may resolve to even if denied")
	f.String("tls-cert", "", "TLS certificate for the HTTP API")
	f.String("tls-key", "", "TLS key for the HTTP API")
	f.String("cluster-ca", "", "CA for mutual TLS between nodes")
	f.String("join-token", "", "the cluster's join token (default: <data-dir>/join-token; a bootstrapping node generates it there)")
	f.Duration("read-timeout", d.ReadTimeout, "a request's headers and body must arrive within it")
	f.String("api-rate", node.FormatRate(d.APIRate), "admin API requests per second per token[:burst] (super tokens are not limited; 0: off)")
	f.String("ingest-rate", node.FormatRate(d.IngestRate), "ingest requests per second per source address[:burst] outside ingest-allow (0: off)")
	f.String("sources", node.DefaultSources, "event sources, comma-separated: http (always on), kamailio://HOST:PORT, ami://USER:PASS@HOST:PORT[?domain=D] (put AMI passwords in the env or the config file, not on the command line)")
	f.Duration("secret-overlap", d.SecretOverlap, "after a signing secret rotation, POSTs carry the old secret's signature too for this long")
	f.Int("max-subs-per-token", d.MaxSubsPerToken, "subscriptions one token may create (super tokens are not limited; 0: no limit)")
	f.Int("metrics-max-subs", d.MetricsMaxSubs, "subscriptions with /metrics series of their own; the rest are summed under sub=\""+node.OtherSubsLabel+"\"")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// Only the agent's own flags are settings: the client flags of
		// the root command are not read from env or file.
		if err := applyEnvAndFile(cmd.LocalFlags()); err != nil {
			return err
		}
		cfg, err := agentConfig(cmd.LocalFlags())
		if err != nil {
			return err
		}
		return runAgent(cmd, cfg)
	}
	return cmd
}

// applyEnvAndFile fills every flag not given on the command line from
// HOOKSWITCH_<NAME>, else from the TOML file: flag, env, file, default.
func applyEnvAndFile(fs *pflag.FlagSet) error {
	fileVals := map[string]any{}
	path, _ := fs.GetString("config")
	if v, ok := os.LookupEnv(envPrefix + "CONFIG"); ok && !fs.Changed("config") {
		path = v
	}
	explicit := fs.Changed("config") || os.Getenv(envPrefix+"CONFIG") != ""
	// --dev never picks up an installed node's config file by accident:
	// only one named explicitly.
	dev, _ := fs.GetBool("dev")
	if explicit || !dev {
		if _, err := toml.DecodeFile(path, &fileVals); err != nil {
			if !errors.Is(err, os.ErrNotExist) || explicit {
				return fmt.Errorf("config file %s: %w", path, err)
			}
		}
	}
	for key := range fileVals {
		if fs.Lookup(key) == nil || key == "config" {
			return fmt.Errorf("config file %s: unknown setting %q", path, key)
		}
	}
	var errs []error
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Changed || fl.Name == "config" {
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			fl.Changed = true
			return
		}
		if v, ok := fileVals[fl.Name]; ok {
			s := fmt.Sprint(v)
			if list, ok := v.([]any); ok {
				parts := make([]string, len(list))
				for i, p := range list {
					parts[i] = fmt.Sprint(p)
				}
				s = strings.Join(parts, ",")
			}
			if err := fl.Value.Set(s); err != nil {
				errs = append(errs, fmt.Errorf("config %s: %w", fl.Name, err))
			}
			fl.Changed = true
		}
	})
	return errors.Join(errs...)
}

func agentConfig(fs *pflag.FlagSet) (node.Config, error) {
	cfg := node.Default()
	str := func(name string) string { v, _ := fs.GetString(name); return v }
	dur := func(name string) time.Duration { v, _ := fs.GetDuration(name); return v }
	boolean := func(name string) bool { v, _ := fs.GetBool(name); return v }
	cfg.Dev = boolean("dev")
	cfg.NodeID = str("node-id")
	cfg.DataDir = str("data-dir")
	cfg.HTTPAddr = str("http-addr")
	cfg.RaftAddr = str("raft-addr")
	cfg.AdvertiseHTTP = str("advertise-http")
	cfg.AdvertiseRaft = str("advertise-raft")
	cfg.Bootstrap = boolean("bootstrap")
	if j := str("join"); j != "" {
		cfg.Join = strings.Split(j, ",")
	}
	cfg.Witness = boolean("witness")
	cfg.Restore = str("restore")
	cfg.Voters, _ = fs.GetInt("voters")
	cfg.ReportInterval = dur("report-interval")
	cfg.DownAfter = dur("down-after")
	cfg.StableAfter = dur("stable-after")
	cfg.Lease = dur("lease")
	cfg.RaftHeartbeatTimeout = dur("raft-heartbeat-timeout")
	cfg.RaftElectionTimeout = dur("raft-election-timeout")
	cfg.Retention = dur("retention")
	cfg.SuspendAfter = dur("suspend-after")
	cfg.TrimInterval = dur("trim-interval")
	cfg.TLSCert, cfg.TLSKey = str("tls-cert"), str("tls-key")
	cfg.ClusterCA, cfg.JoinToken = str("cluster-ca"), str("join-token")
	cfg.ReadTimeout = dur("read-timeout")
	cfg.Sources = strings.Split(str("sources"), ",")
	cfg.SecretOverlap = dur("secret-overlap")
	cfg.MaxSubsPerToken, _ = fs.GetInt("max-subs-per-token")
	cfg.MetricsMaxSubs, _ = fs.GetInt("metrics-max-subs")
	var err error
	if cfg.APIRate, err = node.ParseRate(str("api-rate")); err != nil {
		return cfg, fmt.Errorf("api-rate: %w", err)
	}
	if cfg.IngestRate, err = node.ParseRate(str("ingest-rate")); err != nil {
		return cfg, fmt.Errorf("ingest-rate: %w", err)
	}
	if cfg.RetentionBytes, err = parseBytes(str("retention-bytes")); err != nil {
		return cfg, fmt.Errorf("retention-bytes: %w", err)
	}
	for _, c := range []struct {
		name string
		dst  *[]*net.IPNet
	}{{"ingest-allow", &cfg.IngestAllow}, {"ws-allow", &cfg.WSAllow}, {"post-url-deny", &cfg.PostURLDeny}, {"post-url-allow", &cfg.PostURLAllow}} {
		if *c.dst, err = node.ParseCIDRs(str(c.name)); err != nil {
			return cfg, fmt.Errorf("%s: %w", c.name, err)
		}
	}
	if cfg.Dev {
		// --dev: one node on loopback that bootstraps itself; explicit
		// settings still win.
		if !fs.Changed("data-dir") {
			cfg.DataDir = node.DefaultDevDataDir
		}
		if !fs.Changed("http-addr") {
			cfg.HTTPAddr = devHTTPAddr
		}
		if !fs.Changed("raft-addr") {
			cfg.RaftAddr = devRaftAddr
		}
		if !fs.Changed("stable-after") {
			cfg.StableAfter = 0
		}
		if len(cfg.Join) == 0 {
			cfg.Bootstrap = true
		}
	}
	return cfg, nil
}

// parseBytes reads "2147483648", "512MiB", "2GiB", "64KiB".
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a byte size like 2GiB", s)
	}
	return n * mult, nil
}

func runAgent(cmd *cobra.Command, cfg node.Config) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(cfg, version, logger)
	if err != nil {
		return err
	}
	if cfg.Dev {
		printDevBanner(cmd.OutOrStdout(), n, cfg)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-n.Left():
			logger.Info("this node left the cluster", "component", "main")
			break wait
		case <-hup:
			// SIGHUP: certificates and keys are read again (the node
			// logs the outcome).
			_ = n.Reload()
		}
	}
	logger.Info("shutting down", "component", "main")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return n.Shutdown(sctx)
}

func printDevBanner(w io.Writer, n *node.Node, cfg node.Config) {
	tok, _ := os.ReadFile(filepath.Join(cfg.DataDir, node.RootTokenFile))
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	base := scheme + "://" + n.HTTPAddr()
	fmt.Fprintf(w, `hookswitch (version %s) running in dev mode (single node %q, data in %s)
  API:        %s/v1/subscriptions
  ingest:     %s/v1/events
  health:     %s/healthz   readiness: %s/readyz
  dashboard:  %s/ui/
  root token: %s
  join token: %s   (another node joins with --join %s --join-token <it>)
Try:  export HOOKSWITCH_TOKEN=%s
      hookswitch sub create --model call --post-url http://127.0.0.1:9000/hook
`, version, n.ID(), cfg.DataDir, base, base, base, base, base, strings.TrimSpace(string(tok)), n.JoinToken(), n.HTTPAddr(), strings.TrimSpace(string(tok)))
}

// ---- demo ----

// newDemoCmd is `hookswitch demo` (node/demo): a dev node built exactly as
// `agent --dev` builds it, in a temp dir, with a receiver and synthetic
// PBX traffic.
func newDemoCmd() *cobra.Command {
	o := demo.Options{Version: version}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Try hookswitch: a dev node in a temp dir, a local webhook receiver and synthetic PBX traffic, live",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			o.Out = cmd.OutOrStdout()
			o.Live = demo.IsTerminal(o.Out)
			o.Banner = printDevBanner
			o.Config = func(dataDir, httpAddr string) (node.Config, error) {
				// `agent --dev`'s own flags and config, on a free raft port.
				a := newAgentCmd()
				if err := a.ParseFlags([]string{"--dev", "--data-dir", dataDir, "--http-addr", httpAddr, "--raft-addr", "127.0.0.1:0"}); err != nil {
					return node.Config{}, err
				}
				return agentConfig(a.LocalFlags())
			}
			return demo.Run(ctx, o)
		},
	}
	cmd.Flags().Float64Var(&o.Rate, "rate", demo.DefaultRate, "synthetic calls per second")
	cmd.Flags().StringVar(&o.HTTPAddr, "http-addr", demo.DefaultHTTPAddr, "the dev node's HTTP listen address (default: a free loopback port)")
	cmd.Flags().DurationVar(&o.Duration, "duration", 0, "stop after this long (0: until Ctrl-C)")
	return cmd
}

// ---- client commands ----

type clientFlags struct {
	addr, token, dataDir string
	ca, cert, key        string
	json                 bool
}

func (cf *clientFlags) client() *client.Client {
	return cf.clientFor(cf.target())
}

// clientFor is a client of the node at addr with token and the TLS flags
// (--ca or HOOKSWITCH_CA, --cert, --key). A TLS flag that cannot be read
// makes every call fail with the reason (never a silent fallback to the
// system roots).
func (cf *clientFlags) clientFor(addr, token string) *client.Client {
	c := client.New(addr, token)
	tc, err := cf.tlsConfig()
	if err != nil {
		return c.WithHTTPClient(&http.Client{Transport: failTransport{err}})
	}
	return c.WithTLS(tc)
}

func (cf *clientFlags) tlsConfig() (*tls.Config, error) {
	return client.TLSConfig(firstNonEmpty(cf.ca, os.Getenv(envPrefix+"CA")), cf.cert, cf.key)
}

// failTransport fails every request with err.
type failTransport struct{ err error }

func (f failTransport) RoundTrip(*http.Request) (*http.Response, error) { return nil, f.err }

// target is the node address (with its scheme) and the API token the
// client commands use: flags, then HOOKSWITCH_ADDR / HOOKSWITCH_TOKEN, then
// the default address and the local data dir's root-token.
func (cf *clientFlags) target() (addr, token string) {
	addr = firstNonEmpty(cf.addr, os.Getenv(envPrefix+"ADDR"), defaultAddr)
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return addr, firstNonEmpty(cf.token, os.Getenv(envPrefix+"TOKEN"), cf.localFile(node.RootTokenFile))
}

// target0 is the node address of target.
func (cf *clientFlags) target0() string { a, _ := cf.target(); return a }

// localFile reads a secret file of the local data dir (--client-data-dir,
// else ./hookswitch-data, then the default data dir); "" when none is
// readable.
func (cf *clientFlags) localFile(name string) string {
	dirs := []string{node.DefaultDevDataDir, node.DefaultDataDir}
	if cf.dataDir != "" {
		dirs = []string{cf.dataDir}
	}
	for _, d := range dirs {
		if b, err := os.ReadFile(filepath.Join(d, name)); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// output prints v as JSON (--json) or with the table function.
func (cf *clientFlags) output(cmd *cobra.Command, v any, table func(w *tabwriter.Writer)) error {
	if cf.json {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func newSubCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "sub", Short: "Manage webhook subscriptions"}
	subFields := func(c *cobra.Command) {
		f := c.Flags()
		f.String("model", "", "event model (call, cdr, agent, …, or * with super scope)")
		f.String("post-url", "", "http(s) URL events are posted to")
		f.String("reseller", "", "reseller scope (default *)")
		f.String("domain", "", "domain scope (default *)")
		f.String("user", "", "user scope (default *)")
		f.StringArray("filter", nil, "property=value filter (repeatable)")
		f.String("geo", "", "subscription-geo-support: yes (failover) or no (pinned)")
		f.String("preferred-server", "", "node id that sends it whenever stable")
		f.String("encoding", "", "json-array (default), json or form")
		f.Int("batch-max", 0, "events per POST for json-array (1..1000, default 100)")
		f.Int("timeout-ms", 0, "whole-request timeout in ms (default 15000)")
		f.String("secret", "", "signing secret whsec_<base64> (default: generated)")
		f.String("expires", "", "subscription-expires-datetime, RFC 3339")
	}
	collect := func(c *cobra.Command) (client.Fields, error) {
		f := c.Flags()
		out := client.Fields{}
		for flag, field := range map[string]string{
			"model": "model", "post-url": "post-url", "reseller": "reseller", "domain": "domain", "user": "user",
			"geo": "subscription-geo-support", "preferred-server": "preferred-server", "encoding": "encoding",
			"secret": "secret", "expires": "subscription-expires-datetime",
		} {
			if f.Changed(flag) {
				v, _ := f.GetString(flag)
				out[field] = v
			}
		}
		for _, flag := range []string{"batch-max", "timeout-ms"} {
			if f.Changed(flag) {
				v, _ := f.GetInt(flag)
				out[flag] = v
			}
		}
		if f.Changed("filter") {
			vals, _ := f.GetStringArray("filter")
			filters := []map[string]string{}
			for _, kv := range vals {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return nil, fmt.Errorf("--filter %q: want property=value", kv)
				}
				filters = append(filters, map[string]string{"property": k, "value": v})
			}
			out["filters"] = filters
		}
		return out, nil
	}

	create := &cobra.Command{Use: "create", Short: "Create a subscription", Args: cobra.NoArgs}
	subFields(create)
	create.Flags().String("id", "", "subscription id (default: generated)")
	create.RunE = func(c *cobra.Command, _ []string) error {
		fields, err := collect(c)
		if err != nil {
			return err
		}
		if id, _ := c.Flags().GetString("id"); id != "" {
			fields["id"] = id
		}
		v, err := cf.client().CreateSub(c.Context(), fields)
		if err != nil {
			return err
		}
		return cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) })
	}

	update := &cobra.Command{Use: "update ID", Short: "Change a subscription (only the given flags; --replace for a full replace)", Args: cobra.ExactArgs(1)}
	subFields(update)
	update.Flags().Bool("replace", false, "PUT: replace every writable field (absent ones take defaults)")
	update.Flags().Bool("reset-counters", false, "reset posts-count and error-count to 0")
	update.RunE = func(c *cobra.Command, args []string) error {
		fields, err := collect(c)
		if err != nil {
			return err
		}
		if reset, _ := c.Flags().GetBool("reset-counters"); reset {
			fields["posts-count"], fields["error-count"] = 0, 0
		}
		replace, _ := c.Flags().GetBool("replace")
		v, err := cf.client().UpdateSub(c.Context(), args[0], fields, !replace)
		if err != nil {
			return err
		}
		return cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) })
	}

	list := &cobra.Command{Use: "list", Short: "List subscriptions", Args: cobra.NoArgs}
	list.Flags().String("model", "", "only this model")
	list.Flags().String("domain", "", "only this domain")
	list.Flags().String("status", "", "only this status")
	list.RunE = func(c *cobra.Command, _ []string) error {
		q := url.Values{}
		for _, k := range []string{"model", "domain", "status"} {
			if v, _ := c.Flags().GetString(k); v != "" {
				q.Set(k, v)
			}
		}
		subs, err := cf.client().ListSubs(c.Context(), q)
		if err != nil {
			return err
		}
		return cf.output(c, subs, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "ID\tMODEL\tDOMAIN\tUSER\tPOST-URL\tSTATUS\tSERVER\tPOSTS\tERRORS")
			for _, s := range subs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", esc(s.ID), esc(s.Model), esc(s.Domain), esc(s.User), esc(s.PostURL), esc(s.Status), esc(s.CurrentActiveServer), s.PostsCount, s.ErrorCount)
			}
		})
	}

	get := &cobra.Command{Use: "get ID", Short: "Show a subscription", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			v, err := cf.client().GetSub(c.Context(), args[0])
			if err != nil {
				return err
			}
			return cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) })
		}}

	del := &cobra.Command{Use: "delete ID", Short: "Delete a subscription", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := cf.client().DeleteSub(c.Context(), args[0]); err != nil {
				return err
			}
			return cf.output(c, map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) { fmt.Fprintln(w, "deleted", args[0]) })
		}}

	pauser := func(use string, pause bool) *cobra.Command {
		return &cobra.Command{Use: use + " ID", Short: strings.ToUpper(use[:1]) + use[1:] + " a subscription", Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				v, err := cf.client().PauseSub(c.Context(), args[0], pause)
				if err != nil {
					return err
				}
				return cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) })
			}}
	}

	secret := &cobra.Command{Use: "secret ID", Short: "Print a subscription's signing secret", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := cf.client().Secret(c.Context(), args[0])
			if err != nil {
				return err
			}
			return cf.output(c, map[string]string{"secret": s}, func(w *tabwriter.Writer) { fmt.Fprintln(w, s) })
		}}

	test := &cobra.Command{Use: "test ID", Short: "Send one synthetic event to the post-url now and show the answer", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			r, err := cf.client().TestSub(c.Context(), args[0])
			if err != nil {
				return err
			}
			if err := cf.output(c, r, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "ok:\t%v\nstatus:\t%d\nduration:\t%d ms\nerror:\t%s\nresponse:\t%s\n", r.OK, r.Status, r.DurationMs, r.Error, r.Response)
			}); err != nil {
				return err
			}
			if !r.OK {
				return fmt.Errorf("the receiver did not accept the test event")
			}
			return nil
		}}

	replay := &cobra.Command{Use: "replay ID --from TIME", Short: "Deliver again from the first events at or after TIME (RFC 3339, or a duration ago like 1h)", Args: cobra.ExactArgs(1)}
	replay.Flags().String("from", "", "RFC 3339 time, or a duration ago (30m, 2h)")
	replay.RunE = func(c *cobra.Command, args []string) error {
		s, _ := c.Flags().GetString("from")
		from, err := time.Parse(time.RFC3339, s)
		if err != nil {
			d, derr := time.ParseDuration(s)
			if derr != nil || d < 0 {
				return fmt.Errorf("--from %q: want an RFC 3339 time or a duration ago like 1h", s)
			}
			from = time.Now().Add(-d)
		}
		v, err := cf.client().ReplaySub(c.Context(), args[0], from)
		if err != nil {
			return err
		}
		return cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) })
	}

	cmd.AddCommand(create, list, get, update, del, pauser("pause", true), pauser("resume", false), secret, test, replay, newRotateSecretCmd(cf))
	return cmd
}

// newRotateSecretCmd is `hookswitch sub rotate-secret ID [--secret S]`.
func newRotateSecretCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "rotate-secret ID", Short: "Rotate a subscription's signing secret (both signatures are sent for secret-overlap)", Args: cobra.ExactArgs(1)}
	cmd.Flags().String("secret", "", "the new secret whsec_<base64 of 24-64 bytes> (default: generated)")
	cmd.RunE = func(c *cobra.Command, args []string) error {
		secret, _ := c.Flags().GetString("secret")
		if c.Flags().Changed("secret") && secret == "" {
			return fmt.Errorf("--secret is empty: leave it out to have one generated")
		}
		v, err := cf.client().RotateSecret(c.Context(), args[0], secret)
		if err != nil {
			return err
		}
		return cf.output(c, v, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "secret:\t%s\n", esc(v.Secret))
			if v.PreviousValidUntil != "" {
				fmt.Fprintf(w, "previous secret also signs until:\t%s\n", esc(v.PreviousValidUntil))
			}
		})
	}
	return cmd
}

// esc makes a value from the server safe to print on a terminal.
func esc(s string) string { return client.Escape(s) }

func subDetail(w io.Writer, v httpapi.SubView) {
	filters := make([]string, len(v.Filters))
	for i, f := range v.Filters {
		filters[i] = f.Property + "=" + f.Value
	}
	rows := [][2]string{
		{"id", v.ID}, {"model", v.Model}, {"post-url", v.PostURL},
		{"scope", fmt.Sprintf("reseller=%s domain=%s user=%s", v.Reseller, v.Domain, v.User)},
		{"filters", strings.Join(filters, " ")}, {"encoding", v.Encoding},
		{"batch-max", strconv.Itoa(v.BatchMax)}, {"geo-support", v.GeoSupport},
		{"preferred-server", v.PreferredServer}, {"current-active-server", v.CurrentActiveServer},
		{"status", v.Status}, {"created", v.Created}, {"expires", v.Expires},
		{"posts / errors", fmt.Sprintf("%d / %d", v.PostsCount, v.ErrorCount)},
		{"events / dropped / lag", fmt.Sprintf("%d / %d / %d", v.EventsCount, v.DroppedCount, v.Lag)},
		{"last-error", v.LastError},
	}
	if v.Secret != "" {
		rows = append(rows, [2]string{"secret", v.Secret})
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s:\t%s\n", r[0], esc(r[1]))
	}
}

func newTokenCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens (super scope)"}
	create := &cobra.Command{Use: "create", Short: "Create an API token", Args: cobra.NoArgs}
	var req httpapi.TokenRequest
	create.Flags().StringVar(&req.Role, "role", "", "super, reseller, domain, user or ingest")
	create.Flags().StringVar(&req.Name, "name", "", "a label for the token")
	create.Flags().StringVar(&req.Reseller, "reseller", "", "reseller the token is bound to")
	create.Flags().StringVar(&req.Domain, "domain", "", "domain the token is bound to")
	create.Flags().StringVar(&req.User, "user", "", "user the token is bound to")
	create.RunE = func(c *cobra.Command, _ []string) error {
		v, err := cf.client().CreateToken(c.Context(), req)
		if err != nil {
			return err
		}
		return cf.output(c, v, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "id:\t%s\nrole:\t%s\ntoken:\t%s\n(the token is shown only now)\n", v.ID, v.Role, v.Token)
		})
	}
	list := &cobra.Command{Use: "list", Short: "List API tokens", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			toks, err := cf.client().ListTokens(c.Context())
			if err != nil {
				return err
			}
			return cf.output(c, toks, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tROLE\tRESELLER\tDOMAIN\tUSER\tCREATED")
				for _, t := range toks {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", esc(t.ID), esc(t.Name), esc(t.Role), esc(t.Reseller), esc(t.Domain), esc(t.User), esc(t.Created))
				}
			})
		}}
	revoke := &cobra.Command{Use: "revoke ID", Short: "Revoke an API token", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := cf.client().RevokeToken(c.Context(), args[0]); err != nil {
				return err
			}
			return cf.output(c, map[string]string{"revoked": args[0]}, func(w *tabwriter.Writer) { fmt.Fprintln(w, "revoked", args[0]) })
		}}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func newStatusCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{Use: "status", Short: "The cluster and this node at a glance", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl := cf.client()
			ready := "ready"
			if err := cl.Ready(c.Context()); err != nil {
				ready = "not ready: " + err.Error()
			}
			view, err := cl.Cluster(c.Context())
			if err != nil {
				return err
			}
			subs, err := cl.ListSubs(c.Context(), nil)
			if err != nil {
				return err
			}
			status := map[string]int{}
			for _, s := range subs {
				status[s.Status]++
			}
			out := map[string]any{"ready": ready, "leader": view.Leader, "nodes": view.Nodes, "subscriptions": len(subs), "by-status": status}
			// This node's PBX sources; a node without the endpoint (older)
			// shows none.
			srcs, srcErr := cl.Sources(c.Context())
			if srcErr == nil {
				out["sources"] = srcs.Sources
			}
			return cf.output(c, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "this node:\t%s\nleader:\t%s\nsubscriptions:\t%d %v\n\n", ready, view.Leader, len(subs), status)
				fmt.Fprintln(w, "NODE\tHTTP\tRAFT\tROLE\tSUFFRAGE\tHEALTH\tSUBS")
				for _, nd := range view.Nodes {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", nd.ID, nd.HTTPAddr, nd.RaftAddr, nd.RaftRole, nd.Suffrage, nd.Health, nd.ActiveSub)
				}
				printSources(w, srcs, srcErr)
			})
		}}
}

// printSources adds this node's PBX sources to hookswitch status.
func printSources(w io.Writer, v source.View, err error) {
	fmt.Fprintln(w)
	switch {
	case err != nil:
		fmt.Fprintf(w, "sources:\tunknown (%v)\n", err)
		return
	case len(v.Sources) == 0:
		fmt.Fprintln(w, "sources:\thttp only")
		return
	}
	fmt.Fprintln(w, "SOURCE\tCONNECTED\tCONNECTS\tREAD\tAPPENDED\tDROPPED\tERRORS\tLAST ERROR")
	for _, s := range v.Sources {
		last := s.LastError
		if last != "" {
			last = s.LastErrorTime + " " + last
		}
		fmt.Fprintf(w, "%s\t%v\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Name, s.Connected, s.Connects, s.EventsRead, s.EventsAppended, s.EventsDropped, s.Errors, last)
	}
}

// ---- cluster commands ----

func newClusterCmds(cf *clientFlags) []*cobra.Command {
	join := &cobra.Command{Use: "join HTTP_ADDR", Short: "Ask a running cluster (any member) to add this node", Args: cobra.ExactArgs(1)}
	join.Flags().String("join-token", "", "the cluster's join token (env HOOKSWITCH_JOIN_TOKEN; default: the local data dir's join-token file)")
	join.RunE = func(c *cobra.Command, args []string) error {
		self, err := cf.client().Self(c.Context())
		if err != nil {
			return fmt.Errorf("reading this node: %w", err)
		}
		secret, _ := c.Flags().GetString("join-token")
		secret = firstNonEmpty(secret, os.Getenv(envPrefix+"JOIN_TOKEN"), cf.localFile(node.JoinTokenFile))
		if secret == "" {
			return fmt.Errorf("no join token: pass --join-token, set HOOKSWITCH_JOIN_TOKEN, or copy the cluster's %s file into the data dir", node.JoinTokenFile)
		}
		remote := args[0]
		if !strings.Contains(remote, "://") && strings.HasPrefix(cf.target0(), "https://") {
			remote = "https://" + remote
		}
		if err := cf.clientFor(remote, secret).Join(c.Context(), self); err != nil {
			return err
		}
		return cf.output(c, map[string]string{"joined": self.ID, "via": args[0]}, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "node %s joined the cluster of %s\n", self.ID, args[0])
		})
	}
	leave := &cobra.Command{Use: "leave", Short: "This node leaves gracefully (drain, then remove) and stops", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := cf.client().Leave(c.Context()); err != nil {
				return err
			}
			return cf.output(c, map[string]bool{"left": true}, func(w *tabwriter.Writer) { fmt.Fprintln(w, "left the cluster") })
		}}
	members := &cobra.Command{Use: "members", Short: "Cluster members: id, addresses, raft role, health, up-since, stable, subs", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			v, err := cf.client().Cluster(c.Context())
			if err != nil {
				return err
			}
			return cf.output(c, v, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tHTTP\tRAFT\tROLE\tSUFFRAGE\tHEALTH\tUP-SINCE\tSTABLE\tDRAINING\tWITNESS\tSUBS")
				for _, nd := range v.Nodes {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%v\t%v\t%d\n", nd.ID, nd.HTTPAddr, nd.RaftAddr, nd.RaftRole,
						nd.Suffrage, nd.Health, nd.UpSince, nd.Stable, nd.Draining, nd.Witness, nd.ActiveSub)
				}
			})
		}}
	drainer := func(use string, drain bool) *cobra.Command {
		return &cobra.Command{Use: use + " NODE", Short: map[bool]string{true: "Move subscriptions off a node", false: "Allow subscriptions back on a node"}[drain], Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				if err := cf.client().Drain(c.Context(), args[0], drain); err != nil {
					return err
				}
				return cf.output(c, map[string]any{"node": args[0], "draining": drain}, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "%s: draining=%v\n", args[0], drain)
				})
			}}
	}
	remove := &cobra.Command{Use: "remove NODE", Short: "Remove a (dead) node from the cluster", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := cf.client().RemoveNode(c.Context(), args[0]); err != nil {
				return err
			}
			return cf.output(c, map[string]string{"removed": args[0]}, func(w *tabwriter.Writer) { fmt.Fprintln(w, "removed", args[0]) })
		}}
	return []*cobra.Command{join, leave, members, drainer("drain", true), drainer("undrain", false), remove}
}

// ---- tail ----

// newTailCmd is `hookswitch tail`: the node's websocket event stream
// (GET /v1/events/ws) in the terminal, one JSON object per line, until
// Ctrl-C. --model and --filter become the connection's filter message;
// they are also applied here, so events sent before the node confirmed
// the filters (a --since replay starts at once) are not printed either.
func newTailCmd(cf *clientFlags) *cobra.Command {
	var models, filters []string
	var since string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "tail [--model M] [--filter prop=value ...] [--since X] [--pretty]",
		Short: "Print live events, one JSON object per line, until Ctrl-C",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var fl []match.Filter
			for _, m := range models {
				if m = strings.TrimSpace(m); m != "" {
					fl = append(fl, match.Filter{Property: "model", Value: m})
				}
			}
			for _, kv := range filters {
				prop, val, ok := strings.Cut(kv, "=")
				if !ok || strings.TrimSpace(prop) == "" {
					return fmt.Errorf("--filter %q: want property=value (value * for any)", kv)
				}
				fl = append(fl, match.Filter{Property: strings.TrimSpace(prop), Value: val})
			}
			fs, err := match.NewFilterSet(fl)
			if err != nil {
				return err
			}
			addr, token := cf.target()
			u, err := url.Parse(strings.TrimRight(addr, "/") + httpapi.WSPath)
			if err != nil {
				return fmt.Errorf("--addr %q: %w", addr, err)
			}
			q := u.Query()
			if len(models) > 0 {
				q.Set("model", strings.Join(models, ","))
			}
			if d, err := time.ParseDuration(since); err == nil && d > 0 {
				// A duration ago, like replay's --from.
				since = time.Now().Add(-d).UTC().Format(time.RFC3339)
			}
			if since != "" {
				q.Set("since", since)
			}
			u.RawQuery = q.Encode()
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			hdr := http.Header{}
			if token != "" {
				hdr.Set("Authorization", "Bearer "+token)
			}
			if u.Scheme == "https" {
				u.Scheme = "wss"
			} else if u.Scheme == "http" {
				u.Scheme = "ws"
			}
			dopts := &websocket.DialOptions{HTTPHeader: hdr}
			tc, err := cf.tlsConfig()
			if err != nil {
				return err
			}
			if tc != nil {
				t := http.DefaultTransport.(*http.Transport).Clone()
				t.TLSClientConfig = tc
				dopts.HTTPClient = &http.Client{Transport: t}
			}
			conn, resp, err := websocket.Dial(ctx, u.String(), dopts)
			if err != nil {
				if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
					var e struct {
						Error string `json:"error"`
					}
					if resp.Body != nil {
						_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
					}
					return fmt.Errorf("%s: %s %s", u.Redacted(), resp.Status, e.Error)
				}
				return err
			}
			defer conn.CloseNow()
			conn.SetReadLimit(1 << 20)
			const corr = "hookswitch-tail"
			if len(fl) > 0 {
				msg, _ := json.Marshal(map[string]any{"type": "filter", "correlationId": corr, "filters": fl})
				if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
					return err
				}
			}
			out := c.OutOrStdout()
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					if ctx.Err() != nil {
						_ = conn.Close(websocket.StatusNormalClosure, "")
						return nil
					}
					if code := websocket.CloseStatus(err); code != -1 {
						var ce websocket.CloseError
						errors.As(err, &ce)
						return fmt.Errorf("the node closed the stream: %d %s", int(code), ce.Reason)
					}
					return err
				}
				dec := json.NewDecoder(bytes.NewReader(data))
				dec.UseNumber()
				var obj map[string]any
				if dec.Decode(&obj) != nil {
					continue
				}
				if _, isEvent := obj["event-id"]; !isEvent {
					if obj["correlationId"] == corr && obj["type"] == "error" {
						return fmt.Errorf("the node refused the filters: %v", obj["error"])
					}
					continue // our success reply, or something newer than this client
				}
				if !fs.Match(obj) {
					continue
				}
				line := data
				if pretty {
					var ind bytes.Buffer
					if json.Indent(&ind, data, "", "  ") == nil {
						line = ind.Bytes()
					}
				}
				if _, err := out.Write(append(line, '\n')); err != nil {
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&models, "model", nil, "only events of these models (repeat or comma-separate)")
	f.StringArrayVar(&filters, "filter", nil, "only events whose property has this value, prop=value (* for any value; repeat: same property OR-ed, different properties AND-ed)")
	f.StringVar(&since, "since", "", "first replay from an event-id (the events after it), an RFC3339 time or a duration ago (30m), then go live")
	f.BoolVar(&pretty, "pretty", false, "indent each event")
	return cmd
}

// ---- tls ----

// newTLSCmd is `hookswitch tls init|issue`: a small CA for cluster-ca and
// node certificates signed by it (ECDSA P-256), without openssl.
func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tls", Short: "Make the cluster's CA and node certificates (for tls-cert, tls-key, cluster-ca)"}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "dir", "hookswitch-tls", "directory of the CA (ca.crt, ca.key) and the certificates it issues")
	var caName string
	var caDays int
	initCmd := &cobra.Command{Use: "init", Short: "Create a new CA: <dir>/ca.crt (cluster-ca on every node) and <dir>/ca.key (keep it offline)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			path, err := pki.InitCA(dir, caName, time.Duration(caDays)*24*time.Hour, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "CA certificate: %s\nCA key:         %s (mode 0600; only `hookswitch tls issue` needs it)\nnext: hookswitch tls issue NODE --dir %s --ip <the node's address>\n",
				path, filepath.Join(dir, pki.CAKeyFile), dir)
			return nil
		}}
	initCmd.Flags().StringVar(&caName, "name", "", "the CA's common name (default \"hookswitch cluster CA\")")
	initCmd.Flags().IntVar(&caDays, "days", int(pki.DefaultCAValidity/(24*time.Hour)), "validity in days")

	var dns, ips []string
	var days int
	issue := &cobra.Command{Use: "issue NODE [--dns NAME ...] [--ip ADDR ...]", Short: "Issue a node certificate: <dir>/NODE.crt and <dir>/NODE.key (tls-cert, tls-key)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var parsed []net.IP
			for _, s := range ips {
				ip := net.ParseIP(strings.TrimSpace(s))
				if ip == nil {
					return fmt.Errorf("--ip %q is not an IP address", s)
				}
				parsed = append(parsed, ip)
			}
			if len(parsed) == 0 && len(dns) == 0 {
				fmt.Fprintln(c.ErrOrStderr(), "note: no --ip or --dns given: the certificate names only", args[0], "; peers that dial the node by address will refuse it")
			}
			crt, key, err := pki.Issue(dir, args[0], pki.IssueOptions{DNS: dns, IPs: parsed, Validity: time.Duration(days) * 24 * time.Hour})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "certificate: %s\nkey:         %s (mode 0600)\nsettings:    tls-cert = %q, tls-key = %q, cluster-ca = %q\n",
				crt, key, crt, key, filepath.Join(dir, pki.CACertFile))
			return nil
		}}
	issue.Flags().StringSliceVar(&dns, "dns", nil, "DNS names of the node (repeat or comma-separate)")
	issue.Flags().StringSliceVar(&ips, "ip", nil, "IP addresses of the node, as peers dial them (repeat or comma-separate)")
	issue.Flags().IntVar(&days, "days", int(pki.DefaultNodeValidity/(24*time.Hour)), "validity in days")
	cmd.AddCommand(initCmd, issue)
	return cmd
}

// ---- snapshot ----

// newSnapshotCmd is `hookswitch snapshot save|restore|show`: the replicated
// state (subscriptions with their secrets, tokens, cursors, membership) to
// and from a file (docs/backups.md).
func newSnapshotCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "snapshot", Short: "Save the cluster's state to a file, or restore it (super token)"}
	save := &cobra.Command{Use: "save FILE", Short: "Write the replicated state to FILE (mode 0600: it holds every subscription's secret)", Args: cobra.ExactArgs(1)}
	force := save.Flags().Bool("force", false, "overwrite FILE if it exists")
	save.RunE = func(c *cobra.Command, args []string) error { return snapshotSave(c, cf, args[0], *force) }
	restore := &cobra.Command{Use: "restore FILE", Short: "Replace the running cluster's subscriptions and tokens with FILE's", Args: cobra.ExactArgs(1)}
	yes := restore.Flags().Bool("yes", false, "really replace every subscription and API token of the cluster")
	restore.RunE = func(c *cobra.Command, args []string) error { return snapshotRestore(c, cf, args[0], *yes) }
	show := &cobra.Command{Use: "show FILE", Short: "Check FILE and print its header (no secrets)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			s, err := backup.ReadFile(args[0], nil)
			if err != nil {
				return err
			}
			return cf.output(c, s.Header, func(w *tabwriter.Writer) { printSnapshotHeader(w, s.Header) })
		}}
	cmd.AddCommand(save, restore, show)
	return cmd
}

func printSnapshotHeader(w io.Writer, h backup.Header) {
	fmt.Fprintf(w, "format:\t%s version %d\nsaved:\t%s by node %s (raft index %d)\nsubscriptions:\t%d\ntokens:\t%d\nnodes:\t%d\n",
		h.Format, h.Version, time.UnixMilli(h.CreatedMs).UTC().Format(time.RFC3339), h.SourceNode, h.Applied, h.Subs, h.Tokens, h.Nodes)
}

// snapshotProgress prints "what done/total" on one line of w while a large
// file is read (from 1000 records on).
func snapshotProgress(w io.Writer, what string) backup.Progress {
	return func(done, total int) {
		if total < 1000 {
			return
		}
		fmt.Fprintf(w, "\r%s %d/%d records", what, done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

func snapshotSave(c *cobra.Command, cf *clientFlags, path string, force bool) error {
	body, err := cf.client().Snapshot(c.Context())
	if err != nil {
		return err
	}
	defer body.Close()
	h, err := backup.CopyToFile(path, body, force, snapshotProgress(c.ErrOrStderr(), "saving"))
	if err != nil {
		return err
	}
	if cf.json {
		return cf.output(c, h, nil)
	}
	fmt.Fprintf(c.OutOrStdout(), "saved %d subscriptions, %d tokens and %d nodes to %s\n", h.Subs, h.Tokens, h.Nodes, path)
	fmt.Fprintf(c.OutOrStdout(), "%s is mode 0600: it holds every subscription's secret. Keep it like a password.\n", path)
	return nil
}

func snapshotRestore(c *cobra.Command, cf *clientFlags, path string, yes bool) error {
	s, err := backup.ReadFile(path, snapshotProgress(c.ErrOrStderr(), "checking"))
	if err != nil {
		return err
	}
	h := s.Header
	addr := cf.target0()
	if !yes {
		return fmt.Errorf("this replaces every subscription and API token of the cluster at %s with the %d subscriptions and %d tokens of %s (saved %s by %s); add --yes to go ahead",
			addr, h.Subs, h.Tokens, path, time.UnixMilli(h.CreatedMs).UTC().Format(time.RFC3339), h.SourceNode)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	up := &uploadProgress{r: f, total: fi.Size(), w: c.ErrOrStderr()}
	res, err := cf.client().RestoreSnapshot(c.Context(), up, fi.Size())
	if err != nil {
		return err
	}
	if cf.json {
		return cf.output(c, res, nil)
	}
	fmt.Fprintf(c.OutOrStdout(), "restored %d subscriptions and %d tokens into the cluster at %s\n", res.Subs, res.Tokens, addr)
	return nil
}

// uploadProgress reports, on w, how much of a file was sent (for files of
// 1 MiB and more, at most every 5%).
type uploadProgress struct {
	r           io.Reader
	w           io.Writer
	total, sent int64
	shown       int64
	done        bool
}

func (u *uploadProgress) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	u.sent += int64(n)
	if u.total >= 1<<20 && !u.done {
		pct := u.sent * 100 / u.total
		if pct >= u.shown+5 || u.sent == u.total {
			u.shown = pct
			fmt.Fprintf(u.w, "\rsending %d/%d bytes (%d%%)", u.sent, u.total, pct)
		}
		if u.sent == u.total {
			u.done = true
			fmt.Fprintln(u.w, "\ncommitting through raft…")
		}
	}
	return n, err
}
