package node

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
)

// EnvPrefix starts the environment name of every setting:
// HOOKSWITCH_ + NAME in upper case with dashes as underscores.
const EnvPrefix = "HOOKSWITCH_"

// A Setting is one agent setting. Its Name is the flag (--NAME), the TOML
// key (NAME) and, through EnvName, the environment variable; its default
// is whatever Default() puts into the Config field it is bound to, so the
// named constants above stay the only place a default is written.
type Setting struct {
	Name  string
	Group string // the docs/configuration.md section it is listed under
	// Help is the flag's one-line usage; Doc, when set, is the longer
	// meaning in docs/configuration.md (Markdown), else Help is used.
	Help string
	Doc  string
	// DocDefault, when set, replaces the default in the docs, for
	// defaults that are derived at start ("the hostname").
	DocDefault string
	// DevDefault is the default under --dev, for the docs ("" when the
	// same). main.go applies the dev defaults.
	DevDefault string
	Binding
}

// A Binding is a setting's type and its way into and out of a Config.
type Binding struct {
	// Type names the value's form: bool, string, int, duration, bytes,
	// rate, cidrs or list.
	Type string
	// Set parses v (the flag, env or file form) into c; the error does
	// not name the setting (the caller does).
	Set func(c *Config, v string) error
	// Get formats c's value in the form Set reads.
	Get func(c *Config) string
}

// EnvName is the setting's environment variable.
func (s Setting) EnvName() string { return EnvName(s.Name) }

// EnvName is the environment variable of a setting or client flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Default is the setting's built-in default in its Set form.
func (s Setting) Default() string {
	d := Default()
	return s.Get(&d)
}

// Settings is the table of every agent setting: main.go makes the flags,
// environment names and TOML keys from it, and docs/configuration.md's
// settings tables are generated from it.
//
// Adding a setting is a change in this file and config.go only:
//  1. a Config field, a named DefaultX constant (config.go) and its line in
//     Default() (leave it out for an empty default);
//  2. a row here: Name, Group (one of SettingGroups), Help, a Binding
//     (String, Bool, Int, Duration, Bytes, Rate, CIDRs or List, with the
//     field; a new kind of value is a new Binding constructor below),
//     and Doc/DocDefault/DevDefault when the docs need more than Help;
//  3. checks against other settings in Config.Validate;
//  4. `go generate ./node` to refresh docs/configuration.md (the test
//     TestSettingsDoc fails until it is done).
//
// For example, with SecretOverlap and DefaultSecretOverlap in config.go:
//
//	{Name: "secret-overlap", Group: "Access",
//		Help:    "after a signing secret rotation, POSTs carry the old secret's signature too for this long",
//		Binding: Duration(func(c *Config) *time.Duration { return &c.SecretOverlap })},
//
// A list setting such as sources (`sources = ["http", "ami://…"]` in the
// file, `--sources http,ami://…`) uses List; a count such as
// max-subs-per-token, Int.
var Settings = []Setting{
	{Name: "node-id", Group: "Identity, addresses, data", DocDefault: "the hostname",
		Help:    "this node's id (default: hostname, persisted in <data-dir>/node-id)",
		Doc:     "This node's id: 1 to 64 of `A-Z a-z 0-9 . _ -` (the API's rule; the id becomes a file name on every peer). Stored in `<data-dir>/node-id` at first start; afterwards the file wins, and a different `node-id` is refused (a data dir never silently changes identity). An id that breaks the rule, set or persisted, stops the agent at start.",
		Binding: String(func(c *Config) *string { return &c.NodeID })},
	{Name: "data-dir", Group: "Identity, addresses, data", DevDefault: DefaultDevDataDir,
		Help:    "data directory",
		Doc:     "Where the node keeps its files (created with mode 0700); see [operations](operations.md#the-data-dir).",
		Binding: String(func(c *Config) *string { return &c.DataDir })},
	{Name: "http-addr", Group: "Identity, addresses, data", DevDefault: DevHTTPAddr,
		Help:    "HTTP listen address (API, ingest, websocket, metrics)",
		Doc:     "Listen address of the HTTP server: admin API, ingest, websocket, `/metrics`, health and the internal node-to-node endpoints.",
		Binding: String(func(c *Config) *string { return &c.HTTPAddr })},
	{Name: "raft-addr", Group: "Identity, addresses, data", DevDefault: DevRaftAddr,
		Help:    "raft listen address",
		Doc:     "Listen address of the raft transport.",
		Binding: String(func(c *Config) *string { return &c.RaftAddr })},
	{Name: "advertise-http", Group: "Identity, addresses, data", DocDefault: "derived",
		Help:    "HTTP address other nodes use (default: http-addr)",
		Doc:     "The HTTP address other nodes use to reach this one. Default: the listen address; when its host is empty or unspecified (`:7480`, `0.0.0.0:7480`), this machine's first global unicast address, else `127.0.0.1`.",
		Binding: String(func(c *Config) *string { return &c.AdvertiseHTTP })},
	{Name: "advertise-raft", Group: "Identity, addresses, data", DocDefault: "derived",
		Help:    "raft address other nodes use (default: raft-addr)",
		Doc:     "The same for raft.",
		Binding: String(func(c *Config) *string { return &c.AdvertiseRaft })},

	{Name: "bootstrap", Group: "Cluster membership", DevDefault: "true",
		Help:    "create a new cluster with this node as its first member",
		Doc:     "Create a new cluster with this node as its only voter, and write the root token and the join token. Only on the first node, and harmless later: a data dir that already holds raft state is never bootstrapped again. A node with no raft state and neither `bootstrap` nor `join` waits to be added (`hookswitch join`) and says what to run.",
		Binding: Bool(func(c *Config) *bool { return &c.Bootstrap })},
	{Name: "join", Group: "Cluster membership", DocDefault: "none",
		Help:    "comma-separated HTTP addresses of cluster members to join",
		Doc:     "Comma-separated HTTP addresses of cluster members to join (a TOML list works too). Excludes `bootstrap`. Needs the cluster's join token (`join-token`, below); without one the agent does not start.",
		Binding: List(func(c *Config) *[]string { return &c.Join })},
	{Name: "witness", Group: "Cluster membership",
		Help:    "vote in raft but never send subscriptions",
		Binding: Bool(func(c *Config) *bool { return &c.Witness })},
	{Name: "restore", Group: "Cluster membership", DocDefault: "none",
		Help:    "with --bootstrap, in an empty data dir: start the new cluster with the state of this snapshot file (`hookswitch snapshot save`)",
		Doc:     "A snapshot file (`hookswitch snapshot save`) whose state a node started with `bootstrap`, in an empty data dir, commits before it serves: see [backups.md](backups.md). Refused without `bootstrap` or on a data dir with state; remove it once the cluster runs.",
		Binding: String(func(c *Config) *string { return &c.Restore })},
	{Name: "voters", Group: "Cluster membership",
		Help:    "raft voters at most (witnesses count); further nodes join as non-voters",
		Doc:     "Raft voters at most, witnesses included; further nodes join as non-voters (they send and tail like the others), and the leader promotes a stable non-voter when a voter leaves or stays down for `down-after` × 6. The leader's value counts: set the same on every node. At least 1. See [scaling](scaling.md).",
		Binding: Int(func(c *Config) *int { return &c.Voters })},
	{Name: "dev", Group: "Cluster membership",
		Help:    "single-node cluster on 127.0.0.1 with data in ./hookswitch-data; prints the root token",
		Doc:     "Dev mode, below.",
		Binding: Bool(func(c *Config) *bool { return &c.Dev })},

	{Name: "report-interval", Group: "Health and failover",
		Help:    "node report period",
		Doc:     "Period of the node report (heartbeat, counters, cursors). Must be positive.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.ReportInterval })},
	{Name: "down-after", Group: "Health and failover",
		Help:    "no committed report for this long: node down",
		Binding: Duration(func(c *Config) *time.Duration { return &c.DownAfter })},
	{Name: "stable-after", Group: "Health and failover", DevDefault: "0s",
		Help:    "continuously up this long: node stable",
		Doc:     "Continuously up this long: the node is stable. Not negative.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.StableAfter })},
	{Name: "lease", Group: "Health and failover",
		Help:    "stop sending when the last committed report is older (< down-after)",
		Doc:     "A node stops sending when its last committed report is older than this. Must be longer than `report-interval` and shorter than `down-after`.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.Lease })},
	{Name: "raft-heartbeat-timeout", Group: "Health and failover",
		Help:    "raft heartbeat timeout",
		Doc:     "Raft heartbeat timeout (hashicorp/raft's LAN default); the raft leader lease is never longer than this.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.RaftHeartbeatTimeout })},
	{Name: "raft-election-timeout", Group: "Health and failover",
		Help:    "raft election timeout",
		Binding: Duration(func(c *Config) *time.Duration { return &c.RaftElectionTimeout })},

	{Name: "retention", Group: "Event log and delivery",
		Help:    "event log age limit",
		Doc:     "Events older than this are dropped from the local event log (counted on the subscriptions that had not read them).",
		Binding: Duration(func(c *Config) *time.Duration { return &c.Retention })},
	{Name: "retention-bytes", Group: "Event log and delivery",
		Help:    "event log size limit (bytes, or with KiB/MiB/GiB)",
		Doc:     "Size limit of the event log: a number of bytes, or with a `B`, `KiB`, `MiB`, `GiB` or `TiB` suffix.",
		Binding: Bytes(func(c *Config) *int64 { return &c.RetentionBytes })},
	{Name: "suspend-after", Group: "Event log and delivery",
		Help:    "continuous failure for this long: suspended",
		Doc:     "A subscription failing continuously for this long becomes `suspended`.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.SuspendAfter })},
	{Name: "trim-interval", Group: "Event log and delivery",
		Help:    "how often the local event log is trimmed",
		Doc:     "How often the local event log is trimmed (by `retention` and `retention-bytes`). Must be positive.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.TrimInterval })},

	{Name: "ingest-allow", Group: "Access",
		Help:    "CIDRs that may ingest without a token",
		Doc:     "CIDRs (or bare addresses) that may ingest events without a token; others need an `ingest` token.",
		Binding: CIDRs(func(c *Config) *[]*net.IPNet { return &c.IngestAllow })},
	{Name: "ws-allow", Group: "Access",
		Help:    "CIDRs that may open a websocket",
		Doc:     "CIDRs that may open a websocket at all.",
		Binding: CIDRs(func(c *Config) *[]*net.IPNet { return &c.WSAllow })},
	{Name: "post-url-deny", Group: "Access", DocDefault: "empty",
		Help:    "extra CIDRs a post-url may not resolve to (link-local and metadata are always denied unless allowed)",
		Doc:     "Extra CIDRs a post-url may not resolve to. Link-local and cloud metadata addresses (`169.254.0.0/16`, `fe80::/10`, `fd00:ec2::254`) are always denied unless allowed below. A post-url whose host is a literal address in a denied range, in any spelling, is refused at create and update (`400` naming `post-url`); every resolved address is checked again at connect time.",
		Binding: CIDRs(func(c *Config) *[]*net.IPNet { return &c.PostURLDeny })},
	{Name: "post-url-allow", Group: "Access", DocDefault: "empty",
		Help:    "CIDRs a post-url may resolve to even if denied",
		Doc:     "CIDRs a post-url may resolve to even when denied (the most specific range decides).",
		Binding: CIDRs(func(c *Config) *[]*net.IPNet { return &c.PostURLAllow })},
	{Name: "secret-overlap", Group: "Access",
		Help:    "after a signing secret rotation, POSTs carry the old secret's signature too for this long",
		Doc:     "After a signing secret changes (`POST /v1/subscriptions/{id}/secret/rotate`, or a PUT/PATCH with a new `secret`), every POST carries the old secret's signature beside the new one for this long. `0`: the old one stops at once. Must not be negative.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.SecretOverlap })},
	{Name: "max-subs-per-token", Group: "Access",
		Help:    "subscriptions one token may create (super tokens are not limited; 0: no limit)",
		Doc:     "Subscriptions one API token may create (counted by the token that created them, while they exist); beyond it a create is `403`. Super tokens are not limited. `0`: no limit.",
		Binding: Int(func(c *Config) *int { return &c.MaxSubsPerToken })},
	{Name: "read-timeout", Group: "Access",
		Help:    "a request's headers and body must arrive within it",
		Doc:     "A request's headers, and then its body, must arrive within this; a client that trickles a body is cut off. Long streams (websockets, a peer's log) are not affected once their request has arrived. Must be positive.",
		Binding: Duration(func(c *Config) *time.Duration { return &c.ReadTimeout })},
	{Name: "api-rate", Group: "Access",
		Help:    "admin API requests per second per token[:burst] (super tokens are not limited; 0: off)",
		Doc:     "Admin API requests per second per token, and the burst: `RATE` or `RATE:BURST` (burst default 4 × RATE). Beyond it: 429 with `Retry-After`. Super and node tokens are not limited. `0` turns it off.",
		Binding: Rate(func(c *Config) *httpapi.Rate { return &c.APIRate })},
	{Name: "ingest-rate", Group: "Access",
		Help:    "ingest requests per second per source address[:burst] outside ingest-allow (0: off)",
		Doc:     "Ingest requests per second per source address outside `ingest-allow` (allow-listed sources, loopback by default, are not limited); same format and answer. `0` turns it off.",
		Binding: Rate(func(c *Config) *httpapi.Rate { return &c.IngestRate })},
	{Name: "metrics-max-subs", Group: "Access",
		Help:    "subscriptions with /metrics series of their own; the rest are summed under sub=\"" + OtherSubsLabel + "\"",
		Doc:     "Subscriptions that get per-subscription series of their own in `/metrics` (`sub` label). The first ones this node sees keep theirs; the rest are summed under `sub=\"" + OtherSubsLabel + "\"`, so Prometheus never holds more than this many per-subscription series per node. A deleted subscription frees its label. `0` sums them all. See [metrics.md](metrics.md).",
		Binding: Int(func(c *Config) *int { return &c.MetricsMaxSubs })},

	{Name: "sources", Group: "Event sources",
		Help:    "event sources, comma-separated: http (always on), kamailio://HOST:PORT, ami://USER:PASS@HOST:PORT[?domain=D] (put AMI passwords in the env or the config file, not on the command line)",
		Doc:     "Where events come from, comma-separated (a TOML list in the file): `http` (HTTP ingest, always on whether listed or not), `kamailio://HOST:PORT` (Kamailio's evapi), `ami://USER:PASS@HOST:PORT[?domain=D]` (the Asterisk Manager Interface; `domain` scopes events without an AccountCode). Passwords never appear in logs, status or metrics; put them in the environment (`HOOKSWITCH_SOURCES`) or the config file (mode 0600), not on the command line, where `ps` shows them. A source that cannot connect is retried with backoff and never stops the node. See [sources.md](sources.md).",
		Binding: List(func(c *Config) *[]string { return &c.Sources })},

	{Name: "tls-cert", Group: "TLS and cluster secrets", DocDefault: "none",
		Help:    "TLS certificate for the HTTP API",
		Doc:     "PEM certificate for HTTPS on `http-addr`; with `tls-key`, both or neither. With them, nodes also call each other over HTTPS. Reloaded on SIGHUP (`systemctl reload hookswitch`).",
		Binding: String(func(c *Config) *string { return &c.TLSCert })},
	{Name: "tls-key", Group: "TLS and cluster secrets", DocDefault: "none",
		Help:    "TLS key for the HTTP API",
		Doc:     "PEM key of `tls-cert`. Reloaded on SIGHUP.",
		Binding: String(func(c *Config) *string { return &c.TLSKey })},
	{Name: "cluster-ca", Group: "TLS and cluster secrets", DocDefault: "none",
		Help:    "CA for mutual TLS between nodes",
		Doc:     "PEM CA for mutual TLS between nodes: raft, forwarded writes, joins and the event mesh. Each node presents its `tls-cert` and accepts only peers whose certificate chains to this CA. Needs `tls-cert` and `tls-key`, and `tls-cert` must chain to it (for server and client use). Reloaded on SIGHUP.",
		Binding: String(func(c *Config) *string { return &c.ClusterCA })},
	{Name: "join-token", Group: "TLS and cluster secrets", DocDefault: "`<data-dir>/join-token`",
		Help:    "the cluster's join token (default: <data-dir>/join-token; a bootstrapping node generates it there)",
		Doc:     "The cluster's join token. A node that bootstraps without one generates it into `<data-dir>/join-token` (0600); a joining node presents it (setting, `HOOKSWITCH_JOIN_TOKEN`, or that file) and, once joined, keeps it in that file. At least 16 characters, no spaces.",
		Binding: String(func(c *Config) *string { return &c.JoinToken })},
}

// SettingGroups orders the groups of Settings in the docs.
var SettingGroups = []string{
	"Identity, addresses, data", "Cluster membership", "Health and failover",
	"Event log and delivery", "Access", "Event sources", "TLS and cluster secrets",
}

// Dev mode's listen addresses.
const (
	DevHTTPAddr = "127.0.0.1:7480"
	DevRaftAddr = "127.0.0.1:7481"
)

// LookupSetting returns the setting called name.
func LookupSetting(name string) (Setting, bool) {
	for _, s := range Settings {
		if s.Name == name {
			return s, true
		}
	}
	return Setting{}, false
}

// String binds a string field.
func String(field func(*Config) *string) Binding {
	return Binding{Type: "string",
		Set: func(c *Config, v string) error { *field(c) = v; return nil },
		Get: func(c *Config) string { return *field(c) }}
}

// Bool binds a switch.
func Bool(field func(*Config) *bool) Binding {
	return Binding{Type: "bool",
		Set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%w: %q is not true or false", ErrConfig, v)
			}
			*field(c) = b
			return nil
		},
		Get: func(c *Config) string { return strconv.FormatBool(*field(c)) }}
}

// Int binds a whole number (not negative).
func Int(field func(*Config) *int) Binding {
	return Binding{Type: "int",
		Set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 {
				return fmt.Errorf("%w: %q is not a whole number", ErrConfig, v)
			}
			*field(c) = n
			return nil
		},
		Get: func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

// Duration binds a duration in Go syntax.
func Duration(field func(*Config) *time.Duration) Binding {
	return Binding{Type: "duration",
		Set: func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%w: %q is not a duration like 5s or 1m30s", ErrConfig, v)
			}
			*field(c) = d
			return nil
		},
		Get: func(c *Config) string { return FormatDuration(*field(c)) }}
}

// Bytes binds a byte size ("2GiB").
func Bytes(field func(*Config) *int64) Binding {
	return Binding{Type: "bytes",
		Set: func(c *Config, v string) error {
			n, err := ParseBytes(v)
			if err == nil {
				*field(c) = n
			}
			return err
		},
		Get: func(c *Config) string { return FormatBytes(*field(c)) }}
}

// Rate binds a rate limit ("50:200").
func Rate(field func(*Config) *httpapi.Rate) Binding {
	return Binding{Type: "rate",
		Set: func(c *Config, v string) error {
			r, err := ParseRate(v)
			if err == nil {
				*field(c) = r
			}
			return err
		},
		Get: func(c *Config) string { return FormatRate(*field(c)) }}
}

// CIDRs binds a comma-separated list of CIDRs or addresses.
func CIDRs(field func(*Config) *[]*net.IPNet) Binding {
	return Binding{Type: "cidrs",
		Set: func(c *Config, v string) error {
			n, err := ParseCIDRs(v)
			if err == nil {
				*field(c) = n
			}
			return err
		},
		Get: func(c *Config) string { return FormatCIDRs(*field(c)) }}
}

// List binds a comma-separated list of strings.
func List(field func(*Config) *[]string) Binding {
	return Binding{Type: "list",
		Set: func(c *Config, v string) error { *field(c) = splitList(v); return nil },
		Get: func(c *Config) string { return strings.Join(*field(c), ",") }}
}

// FormatDuration writes d without zero tails: 72h, 1m, 1m30s, 250ms.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseBytes reads "2147483648", "512MiB", "2GiB", "64KiB".
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return 0, fmt.Errorf("%w: %q is not a byte size like 2GiB", ErrConfig, s)
	}
	return n * mult, nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}

// FormatBytes is ParseBytes's inverse, with the largest whole unit.
func FormatBytes(n int64) string {
	for _, u := range byteUnits[:4] {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// FormatCIDRs is ParseCIDRs's inverse: a single address is written bare.
func FormatCIDRs(nets []*net.IPNet) string {
	parts := make([]string, len(nets))
	for i, n := range nets {
		if ones, bits := n.Mask.Size(); ones == bits {
			parts[i] = n.IP.String()
		} else {
			parts[i] = n.String()
		}
	}
	return strings.Join(parts, ",")
}
