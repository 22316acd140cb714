package node

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
)

// Defaults of the settings in DESIGN.md ("Settings").
const (
	DefaultDataDir        = "/var/lib/hookswitch"
	DefaultDevDataDir     = "./hookswitch-data"
	DefaultHTTPAddr       = ":7480"
	DefaultRaftAddr       = ":7481"
	DefaultReportInterval = 1 * time.Second
	DefaultDownAfter      = 5 * time.Second
	DefaultStableAfter    = 60 * time.Second
	DefaultLease          = 3 * time.Second
	DefaultRetention      = 72 * time.Hour
	DefaultRetentionBytes = 2 << 30 // 2 GiB
	DefaultSuspendAfter   = 24 * time.Hour
	DefaultAllowLoopback  = "127.0.0.0/8,::1"
	// DefaultRaftHeartbeatTimeout and DefaultRaftElectionTimeout are
	// hashicorp/raft's own defaults for a LAN.
	DefaultRaftHeartbeatTimeout = 1000 * time.Millisecond
	DefaultRaftElectionTimeout  = 1000 * time.Millisecond
	// DefaultTrimInterval is how often the local event log is trimmed.
	DefaultTrimInterval = 5 * time.Second
	// DefaultShutdownTimeout bounds a graceful stop.
	DefaultShutdownTimeout = 15 * time.Second
	// DefaultReadTimeout bounds the arrival of a request's headers and body.
	DefaultReadTimeout = 10 * time.Second
	// DefaultSecretOverlap is secret-overlap: how long after a rotation
	// POSTs carry the old secret's signature too.
	DefaultSecretOverlap = 24 * time.Hour
	// DefaultMaxSubsPerToken is max-subs-per-token (0: no limit).
	DefaultMaxSubsPerToken = 1000
	// DefaultMetricsMaxSubs is how many subscriptions get /metrics series
	// of their own (metrics-max-subs); the rest are summed under one label.
	DefaultMetricsMaxSubs = 1000
	// MinJoinTokenLen is the shortest join-token setting accepted.
	MinJoinTokenLen = 16
	// DefaultVoters is how many raft voters a cluster keeps at most
	// (witnesses included); further nodes are non-voters (voters.go).
	DefaultVoters = 5
)

// Default rate limits (DESIGN.md "Settings").
var (
	DefaultAPIRate    = httpapi.Rate{PerSecond: 50, Burst: 200}
	DefaultIngestRate = httpapi.Rate{PerSecond: 5000, Burst: 10000}
)

// Config is everything a node needs to run. main.go fills it from flags,
// environment and the config file.
type Config struct {
	NodeID        string
	DataDir       string
	HTTPAddr      string
	RaftAddr      string
	AdvertiseHTTP string
	AdvertiseRaft string
	Dev           bool
	Bootstrap     bool
	Join          []string
	Witness       bool
	// Voters is the most raft voters the cluster keeps (witnesses
	// included); the leader's setting is the one that counts.
	Voters int
	// Restore is a snapshot file (`hookswitch snapshot save`) whose state
	// a node bootstrapping a new cluster commits before it serves; only
	// with Bootstrap and an empty data dir.
	Restore string

	ReportInterval       time.Duration
	DownAfter            time.Duration
	StableAfter          time.Duration
	Lease                time.Duration
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration

	Retention      time.Duration
	RetentionBytes int64
	SuspendAfter   time.Duration
	TrimInterval   time.Duration

	IngestAllow []*net.IPNet
	WSAllow     []*net.IPNet

	PostURLDeny  []*net.IPNet
	PostURLAllow []*net.IPNet

	TLSCert   string
	TLSKey    string
	ClusterCA string
	JoinToken string

	// ReadTimeout bounds the arrival of a request's headers and body.
	ReadTimeout time.Duration
	// APIRate limits admin API requests per token; IngestRate ingest
	// requests per source address outside IngestAllow. Zero: no limit.
	APIRate    httpapi.Rate
	IngestRate httpapi.Rate

	ShutdownTimeout time.Duration

	// Sources are the event sources (DESIGN.md "PBX sources"): "http"
	// (always on) and kamailio:// and ami:// URLs (node/sources.go).
	Sources []string
	// SecretOverlap is secret-overlap; MaxSubsPerToken max-subs-per-token
	// (super tokens are not limited; 0: no limit).
	SecretOverlap   time.Duration
	MaxSubsPerToken int
	// MetricsMaxSubs is how many subscriptions get per-subscription
	// series of their own in /metrics (metrics-max-subs); 0: none.
	MetricsMaxSubs int
}

// Default returns a Config with DESIGN.md's defaults.
func Default() Config {
	return Config{
		DataDir:              DefaultDataDir,
		HTTPAddr:             DefaultHTTPAddr,
		RaftAddr:             DefaultRaftAddr,
		ReportInterval:       DefaultReportInterval,
		DownAfter:            DefaultDownAfter,
		StableAfter:          DefaultStableAfter,
		Lease:                DefaultLease,
		RaftHeartbeatTimeout: DefaultRaftHeartbeatTimeout,
		RaftElectionTimeout:  DefaultRaftElectionTimeout,
		Retention:            DefaultRetention,
		RetentionBytes:       DefaultRetentionBytes,
		SuspendAfter:         DefaultSuspendAfter,
		TrimInterval:         DefaultTrimInterval,
		IngestAllow:          MustParseCIDRs(DefaultAllowLoopback),
		WSAllow:              MustParseCIDRs(DefaultAllowLoopback),
		ShutdownTimeout:      DefaultShutdownTimeout,
		ReadTimeout:          DefaultReadTimeout,
		APIRate:              DefaultAPIRate,
		IngestRate:           DefaultIngestRate,
		Voters:               DefaultVoters,
		Sources:              []string{DefaultSources},
		SecretOverlap:        DefaultSecretOverlap,
		MaxSubsPerToken:      DefaultMaxSubsPerToken,
		MetricsMaxSubs:       DefaultMetricsMaxSubs,
	}
}

// ErrConfig marks an invalid configuration.
var ErrConfig = errors.New("invalid configuration")

// Validate checks the settings against each other.
func (c *Config) Validate() error {
	if _, err := ParseSources(c.Sources); err != nil {
		return err
	}
	switch {
	case c.DataDir == "":
		return fmt.Errorf("%w: data-dir is empty", ErrConfig)
	case c.Lease >= c.DownAfter:
		return fmt.Errorf("%w: lease (%s) must be less than down-after (%s)", ErrConfig, c.Lease, c.DownAfter)
	case c.ReportInterval <= 0:
		return fmt.Errorf("%w: report-interval must be positive", ErrConfig)
	case c.Lease <= c.ReportInterval:
		return fmt.Errorf("%w: lease (%s) must be longer than report-interval (%s)", ErrConfig, c.Lease, c.ReportInterval)
	case c.TrimInterval <= 0:
		return fmt.Errorf("%w: trim-interval must be positive", ErrConfig)
	case c.StableAfter < 0:
		return fmt.Errorf("%w: stable-after must not be negative", ErrConfig)
	case c.Bootstrap && len(c.Join) > 0:
		return fmt.Errorf("%w: --bootstrap and --join exclude each other", ErrConfig)
	case c.Restore != "" && !c.Bootstrap:
		return fmt.Errorf("%w: --restore needs --bootstrap: a snapshot file starts a new cluster (restore into a running one with `hookswitch snapshot restore`)", ErrConfig)
	case c.NodeID != "" && !httpapi.ValidNodeID(c.NodeID):
		return fmt.Errorf("%w: node-id %q: want 1 to 64 of A-Z a-z 0-9 . _ - (the API's rule; it becomes a file name on every peer)", ErrConfig, c.NodeID)
	case c.TLSCert != "" && c.TLSKey == "":
		return fmt.Errorf("%w: tls-cert is set without tls-key", ErrConfig)
	case c.TLSKey != "" && c.TLSCert == "":
		return fmt.Errorf("%w: tls-key is set without tls-cert", ErrConfig)
	case c.ClusterCA != "" && c.TLSCert == "":
		return fmt.Errorf("%w: cluster-ca needs tls-cert and tls-key (each node presents its certificate to its peers)", ErrConfig)
	case c.JoinToken != "" && len(c.JoinToken) < MinJoinTokenLen:
		return fmt.Errorf("%w: join-token is shorter than %d characters", ErrConfig, MinJoinTokenLen)
	case strings.ContainsFunc(c.JoinToken, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("%w: join-token has spaces or control characters", ErrConfig)
	case c.ReadTimeout <= 0:
		return fmt.Errorf("%w: read-timeout must be positive", ErrConfig)
	case c.Voters < 1:
		return fmt.Errorf("%w: voters must be at least 1", ErrConfig)
	case c.APIRate.PerSecond < 0 || c.APIRate.Burst < 0 || c.IngestRate.PerSecond < 0 || c.IngestRate.Burst < 0:
		return fmt.Errorf("%w: rates must not be negative", ErrConfig)
	case c.SecretOverlap < 0:
		return fmt.Errorf("%w: secret-overlap must not be negative", ErrConfig)
	case c.MaxSubsPerToken < 0:
		return fmt.Errorf("%w: max-subs-per-token must not be negative (0: no limit)", ErrConfig)
	case c.MetricsMaxSubs < 0:
		return fmt.Errorf("%w: metrics-max-subs must not be negative", ErrConfig)
	}
	return nil
}

// ParseRate reads a rate setting: "RATE" or "RATE:BURST" requests per
// second ("50:200"); the burst defaults to 4 × RATE; "0" turns the limit
// off.
func ParseRate(s string) (httpapi.Rate, error) {
	s = strings.TrimSpace(s)
	rs, bs, hasBurst := strings.Cut(s, ":")
	r, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(rs, "/s")), 64)
	if err != nil || r < 0 || math.IsInf(r, 0) || math.IsNaN(r) {
		return httpapi.Rate{}, fmt.Errorf("%w: %q is not a rate like 50 or 50:200 (per second[:burst])", ErrConfig, s)
	}
	if r == 0 {
		return httpapi.Rate{}, nil
	}
	burst := int(math.Ceil(4 * r))
	if hasBurst {
		b, err := strconv.Atoi(strings.TrimSpace(bs))
		if err != nil || b < 1 {
			return httpapi.Rate{}, fmt.Errorf("%w: %q: the burst must be a positive whole number", ErrConfig, s)
		}
		burst = b
	}
	return httpapi.Rate{PerSecond: r, Burst: burst}, nil
}

// FormatRate is ParseRate's inverse.
func FormatRate(r httpapi.Rate) string {
	if !r.Enabled() {
		return "0"
	}
	return strconv.FormatFloat(r.PerSecond, 'f', -1, 64) + ":" + strconv.Itoa(r.Burst)
}

// ParseCIDRs parses a comma-separated list of CIDRs or bare addresses.
func ParseCIDRs(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, part := range splitList(s) {
		if _, n, err := net.ParseCIDR(part); err == nil {
			out = append(out, n)
			continue
		}
		ip := net.ParseIP(part)
		if ip == nil {
			return nil, fmt.Errorf("%w: %q is not a CIDR or an IP address", ErrConfig, part)
		}
		bits := 128
		if ip.To4() != nil {
			ip, bits = ip.To4(), 32
		}
		out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
	}
	return out, nil
}

// MustParseCIDRs is ParseCIDRs for constants.
func MustParseCIDRs(s string) []*net.IPNet {
	n, err := ParseCIDRs(s)
	if err != nil {
		panic(err)
	}
	return n
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
