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
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/BurntSushi/toml"
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
	envPrefix         = node.EnvPrefix
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
	f := cmd.Flags()
	f.String("config", defaultConfigFile, "TOML config file (missing is fine unless set explicitly)")
	addSettingFlags(f)
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
		env := node.EnvName(fl.Name)
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

// addSettingFlags makes a flag of every setting in node.Settings.
func addSettingFlags(f *pflag.FlagSet) {
	for _, s := range node.Settings {
		fl := f.VarPF(&settingValue{s: s, val: s.Default()}, s.Name, "", s.Help)
		if s.Type == "bool" {
			fl.NoOptDefVal = "true"
		}
	}
}

// settingValue is a setting's flag: it keeps the text and checks it with
// the setting's parser, so a bad value from a flag, the environment or
// the file is refused where it is set.
type settingValue struct {
	s   node.Setting
	val string
}

func (v *settingValue) String() string { return v.val }
func (v *settingValue) Type() string   { return v.s.Type }
func (v *settingValue) Set(x string) error {
	var scratch node.Config
	if err := v.s.Set(&scratch, x); err != nil {
		return err
	}
	v.val = x
	return nil
}

// agentConfig is node.Default() with every setting's flag applied.
func agentConfig(fs *pflag.FlagSet) (node.Config, error) {
	cfg := node.Default()
	for _, s := range node.Settings {
		if fl := fs.Lookup(s.Name); fl != nil && fl.Changed {
			if err := s.Set(&cfg, fl.Value.String()); err != nil {
				return cfg, fmt.Errorf("%s: %w", s.Name, err)
			}
		}
	}
	if cfg.Dev {
		// --dev: one node on loopback that bootstraps itself; explicit
		// settings still win.
		if !fs.Changed("data-dir") {
			cfg.DataDir = node.DefaultDevDataDir
		}
		if !fs.Changed("http-addr") {
			cfg.HTTPAddr = node.DevHTTPAddr
		}
		if !fs.Changed("raft-addr") {
			cfg.RaftAddr = node.DevRaftAddr
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
	if n.Unjoined() {
		scheme := "http"
		if cfg.TLSCert != "" {
			scheme = "https"
		}
		_, port, _ := net.SplitHostPort(n.HTTPAddr())
		fmt.Fprint(cmd.ErrOrStderr(), unjoinedMessage(cfg.DataDir, scheme+"://127.0.0.1:"+port))
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

// unjoinedMessage is what an agent with no cluster state and neither
// --bootstrap nor --join prints: it runs, waiting to be added.
func unjoinedMessage(dataDir, httpAddr string) string {
	return fmt.Sprintf(`hookswitch: %s holds no cluster yet and neither --bootstrap nor --join is set.
This node waits to be added to a cluster. Do one of:
  hookswitch --addr %s join HTTP_ADDR   on this machine: add this running node to the cluster at HTTP_ADDR (join token: --join-token or HOOKSWITCH_JOIN_TOKEN)
  hookswitch agent --join HTTP_ADDR --join-token TOKEN ...   restart it joining (TOKEN: the first node's <data-dir>/%s)
  hookswitch agent --bootstrap ...                           restart it as the first node of a new cluster
  hookswitch agent --dev                                     a single node to try hookswitch out
`, dataDir, httpAddr, node.JoinTokenFile)
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
			fmt.Fprintln(w, "ID\tMODEL\tRESELLER\tDOMAIN\tUSER\tPOST-URL\tSTATUS\tSERVER\tPOSTS\tERRORS\tLAG")
			for _, s := range subs {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", esc(s.ID), esc(s.Model), esc(s.Reseller), esc(s.Domain), esc(s.User), esc(s.PostURL),
					esc(s.Status), esc(s.CurrentActiveServer), s.PostsCount, s.ErrorCount, s.Lag)
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
		cl := cf.client()
		v, err := cl.ReplaySub(c.Context(), args[0], from)
		if err != nil {
			return err
		}
		if err := cf.output(c, v, func(w *tabwriter.Writer) { subDetail(w, v) }); err != nil {
			return err
		}
		if wait, _ := c.Flags().GetBool("wait"); !wait || cf.json {
			return nil
		}
		ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return followReplay(ctx, cl, v, c.ErrOrStderr(), replayPoll)
	}
	replay.Flags().Bool("wait", true, "show the replay's progress until the subscription has caught up (Ctrl-C stops watching, not the replay)")

	cmd.AddCommand(create, list, get, update, del, pauser("pause", true), pauser("resume", false), secret, test, replay, newRotateSecretCmd(cf))
	return cmd
}

// replayPoll is how often followReplay reads the subscription.
const replayPoll = time.Second

// followReplay prints a replay's progress on w, one line per change of the
// subscription's lag or posts, until it has caught up (lag 0 after the
// node has reported on it since the replay), stops delivering (paused,
// suspended), or ctx ends.
func followReplay(ctx context.Context, cl *client.Client, start httpapi.SubView, w io.Writer, poll time.Duration) error {
	t := time.NewTicker(poll)
	defer t.Stop()
	last := ""
	zeroes := 0
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w, "stopped watching; the replay goes on in the cluster (hookswitch sub get", start.ID+")")
			return nil
		case <-t.C:
		}
		v, err := cl.GetSub(ctx, start.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			return err
		}
		posted := v.EventsCount - min(v.EventsCount, start.EventsCount)
		line := fmt.Sprintf("replay %s: %d events behind, %d delivered again, status %s", v.ID, v.Lag, posted, v.Status)
		if v.LastError != "" && v.Status == "error" {
			line += " (" + v.LastError + ")"
		}
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		switch {
		case v.Status == "paused" || v.Status == "suspended":
			fmt.Fprintf(w, "the subscription is %s: the replay continues when it delivers again\n", v.Status)
			return nil
		case v.Lag == 0 && posted > 0:
			fmt.Fprintln(w, "caught up")
			return nil
		case v.Lag == 0:
			// Nothing delivered yet and no lag: either nothing to replay,
			// or the owner has not reported since the replay. Three
			// quiet reads in a row settle it.
			if zeroes++; zeroes >= 3 {
				fmt.Fprintln(w, "caught up")
				return nil
			}
		default:
			zeroes = 0
		}
	}
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
				statusTables(w, cf.target0(), ready, view, status, len(subs))
				printSources(w, srcs, srcErr)
			})
		}}
}

// statusOrder lists subscription statuses in the order status prints them;
// others follow alphabetically.
var statusOrder = []string{"pending", "active", "error", "waiting", "paused", "suspended"}

// statusTables is `hookswitch status` as tables: the node asked, the
// subscriptions by status, the members.
func statusTables(w io.Writer, addr, ready string, view httpapi.ClusterView, byStatus map[string]int, total int) {
	up := 0
	for _, nd := range view.Nodes {
		if nd.Health == "up" {
			up++
		}
	}
	leader := view.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "NODE ASKED\tLEADER\tMEMBERS\tUP\n%s (%s)\t%s\t%d\t%d\n\n", esc(addr), esc(ready), esc(leader), len(view.Nodes), up)
	fmt.Fprintln(w, "SUBSCRIPTIONS\tCOUNT")
	var names []string
	for st := range byStatus {
		if !slices.Contains(statusOrder, st) {
			names = append(names, st)
		}
	}
	sort.Strings(names)
	for _, st := range append(slices.Clone(statusOrder), names...) {
		if n, ok := byStatus[st]; ok {
			fmt.Fprintf(w, "%s\t%d\n", esc(st), n)
		}
	}
	fmt.Fprintf(w, "total\t%d\n\n", total)
	fmt.Fprintln(w, "NODE\tHTTP\tRAFT\tROLE\tSUFFRAGE\tHEALTH\tDRAINING\tSUBS")
	for _, nd := range view.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%d\n", esc(nd.ID), esc(nd.HTTPAddr), esc(nd.RaftAddr), esc(nd.RaftRole), esc(nd.Suffrage), esc(nd.Health), nd.Draining, nd.ActiveSub)
	}
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
			for _, kv := range filters {
				prop, val, ok := strings.Cut(kv, "=")
				if !ok || strings.TrimSpace(prop) == "" {
					return fmt.Errorf("--filter %q: want property=value (value * for any)", kv)
				}
				fl = append(fl, match.Filter{Property: strings.TrimSpace(prop), Value: val})
			}
			if d, err := time.ParseDuration(since); err == nil && d > 0 {
				// A duration ago, like replay's --from.
				since = time.Now().Add(-d).UTC().Format(time.RFC3339)
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			out := c.OutOrStdout()
			return cf.client().Tail(ctx, client.StreamOptions{Models: models, Filters: fl, Since: since}, func(ev json.RawMessage) error {
				line := []byte(ev)
				if pretty {
					var ind bytes.Buffer
					if json.Indent(&ind, ev, "", "  ") == nil {
						line = ind.Bytes()
					}
				}
				_, err := out.Write(append(line, '\n'))
				return err
			})
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
