package node

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
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

	ShutdownTimeout time.Duration
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
	}
}

// ErrConfig marks an invalid configuration.
var ErrConfig = errors.New("invalid configuration")

// Validate checks the settings against each other.
func (c *Config) Validate() error {
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
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return fmt.Errorf("%w: tls-cert and tls-key go together", ErrConfig)
	}
	return nil
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
