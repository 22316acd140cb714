package webhook

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// ErrRefused is wrapped by every post-url guard refusal.
var ErrRefused = errors.New("post-url guard: address refused")

// RefusedError reports a connection the post-url guard refused.
type RefusedError struct {
	Addr    netip.Addr   // the resolved address the dialer was about to connect to
	Rule    netip.Prefix // the denied range it falls in
	Default bool         // Rule is one of DefaultDeny, not from post-url-deny
}

func (e *RefusedError) Error() string {
	why := "post-url-deny"
	if e.Default {
		why = "link-local and cloud metadata addresses are denied by default; post-url-allow can permit it"
	}
	return fmt.Sprintf("post-url guard: refusing to connect to %s: it is in the denied range %s (%s)", e.Addr, e.Rule, why)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

// DefaultDeny returns the ranges the guard always denies unless allowed:
// IPv4 link-local (which holds the 169.254.169.254 cloud metadata service),
// IPv6 link-local, and the AWS IPv6 metadata address.
func DefaultDeny() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("fd00:ec2::254/128"),
	}
}

// Guard is the post-url guard: it decides, for the address a post-url
// resolved to, whether hookswitch may connect. Each rule is a CIDR range,
// denied or allowed; the most specific range containing the address decides
// (allow wins between equal ranges); an address in no range is allowed, so
// loopback and private ranges are allowed unless denied.
//
// The deny list is DefaultDeny plus the configured post-url-deny ranges, so
// configuring extra denials never re-opens the metadata service; to reach a
// default-denied address, allow it (post-url-allow). To permit only some
// destinations, deny 0.0.0.0/0 and ::/0 and allow those.
//
// A Guard is immutable and safe for concurrent use. A nil *Guard applies
// the defaults, like NewGuard(nil, nil).
type Guard struct {
	deny     []netip.Prefix
	defaults int // deny[:defaults] are DefaultDeny
	allow    []netip.Prefix
}

// NewGuard returns a guard denying DefaultDeny plus deny, except allow.
func NewGuard(deny, allow []netip.Prefix) *Guard {
	defaults := DefaultDeny()
	g := &Guard{defaults: len(defaults)}
	for _, p := range append(defaults, deny...) {
		g.deny = append(g.deny, p.Masked())
	}
	for _, p := range allow {
		g.allow = append(g.allow, p.Masked())
	}
	return g
}

// ParsePrefixes parses a comma-separated list of CIDR ranges or single
// addresses (a single address is a /32 or /128 range), as the post-url-deny
// and post-url-allow settings are written. Blank items are skipped.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.Contains(item, "/") {
			p, err := netip.ParsePrefix(item)
			if err != nil {
				return nil, fmt.Errorf("post-url guard: bad CIDR %q: %w", item, err)
			}
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("post-url guard: bad address %q: %w", item, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Check returns a *RefusedError when the guard refuses addr, else nil.
// IPv4-mapped IPv6 addresses are checked as IPv4, and zones are ignored.
func (g *Guard) Check(addr netip.Addr) error {
	if g == nil {
		g = NewGuard(nil, nil)
	}
	addr = addr.Unmap().WithZone("")
	denyBits, allowBits := -1, -1
	var rule netip.Prefix
	isDefault := false
	for i, p := range g.deny {
		if p.Bits() > denyBits && p.Contains(addr) {
			denyBits, rule, isDefault = p.Bits(), p, i < g.defaults
		}
	}
	if denyBits < 0 {
		return nil
	}
	for _, p := range g.allow {
		if p.Bits() > allowBits && p.Contains(addr) {
			allowBits = p.Bits()
		}
	}
	if allowBits >= denyBits {
		return nil
	}
	return &RefusedError{Addr: addr, Rule: rule, Default: isDefault}
}

// Control is a net.Dialer Control function: it is called with the resolved
// address of every connection attempt, after DNS and before connect, so a
// post-url whose name resolves (or re-resolves) to a denied address is
// refused.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("post-url guard: unexpected dial address %q: %w", address, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("post-url guard: unexpected dial address %q: %w", address, err)
	}
	return g.Check(addr)
}
