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

// CheckHost applies the guard to the host of a post-url when it is a
// literal address, in any spelling a resolver or an HTTP client might read
// as one: an IPv6 literal with or without brackets or a zone id
// ("fe80::1%eth0"), IPv4-mapped and NAT64 forms of an IPv4 address, the
// inet_aton forms of IPv4 (a single integer "2852039166", hex
// "0xA9FEA9FE", octal "0251.0376.0251.0376", and the short "a.b.c" and
// "a.b" forms), and any of these with a trailing dot. It returns a
// *RefusedError (wrapping ErrRefused) for a refused literal and nil for
// an allowed one or a name: names are checked at connect time (Control),
// against every address they resolve to.
func (g *Guard) CheckHost(host string) error {
	for _, addr := range LiteralAddrs(host) {
		if err := g.Check(addr); err != nil {
			return err
		}
	}
	return nil
}

// LiteralAddrs returns the addresses host denotes when it is a literal
// address in any of the spellings CheckHost describes: the address itself
// and, for IPv6 forms that embed an IPv4 address (IPv4-mapped,
// IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96), that IPv4 address. It
// returns nil for a name.
func LiteralAddrs(host string) []netip.Addr {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	for strings.HasSuffix(h, ".") {
		h = strings.TrimSuffix(h, ".")
	}
	if h == "" {
		return nil
	}
	if a, err := netip.ParseAddr(h); err == nil {
		a = a.WithZone("")
		out := []netip.Addr{a}
		if a.Is4In6() {
			return append(out, a.Unmap())
		}
		if a.Is6() {
			b := a.As16()
			for _, p := range embeddingV4 {
				// ::a.b.c.d, except :: and ::1 (0.0.0.0/8 is no host).
				if p.Contains(a) && b[12] != 0 {
					out = append(out, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
				}
			}
		}
		return out
	}
	if a, ok := parseInetAton(h); ok {
		return []netip.Addr{a}
	}
	return nil
}

// embeddingV4 are IPv6 ranges whose last 32 bits are an IPv4 address a
// gateway may connect to: IPv4-compatible (deprecated) and NAT64.
var embeddingV4 = []netip.Prefix{
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("64:ff9b::/96"),
}

// parseInetAton reads s as inet_aton(3) does: one to four parts separated
// by dots, each decimal, hex (0x…) or octal (leading 0); the last part
// fills the remaining bytes.
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		v, ok := parseAtonPart(p)
		if !ok {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	last := len(vals) - 1
	for _, v := range vals[:last] {
		if v > 0xff {
			return netip.Addr{}, false
		}
	}
	if vals[last] >= 1<<(8*uint(4-last)) {
		return netip.Addr{}, false
	}
	var n uint32
	for i, v := range vals[:last] {
		n |= uint32(v) << (8 * uint(3-i))
	}
	n |= uint32(vals[last])
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func parseAtonPart(p string) (uint64, bool) {
	base := 10
	digits := p
	switch {
	case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
		base, digits = 16, p[2:]
		if digits == "" {
			return 0, true // "0x" alone is 0 to inet_aton
		}
	case len(p) > 1 && p[0] == '0':
		base, digits = 8, p[1:]
	}
	if digits == "" || len(digits) > 32 {
		return 0, false
	}
	var v uint64
	for _, c := range digits {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, false
		}
		if d >= uint64(base) {
			return 0, false
		}
		v = v*uint64(base) + d
		if v > 0xffffffff {
			return 0, false
		}
	}
	return v, true
}
