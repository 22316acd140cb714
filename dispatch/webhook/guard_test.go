package webhook

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func mustPrefixes(t *testing.T, s string) []netip.Prefix {
	t.Helper()
	p, err := ParsePrefixes(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuardCheck(t *testing.T) {
	tests := []struct {
		name    string
		deny    string
		allow   string
		addr    string
		refused bool
	}{
		{"metadata refused by default", "", "", "169.254.169.254", true},
		{"link-local v4 refused", "", "", "169.254.1.1", true},
		{"link-local v6 refused", "", "", "fe80::1", true},
		{"link-local v6 with zone refused", "", "", "fe80::1%eth0", true},
		{"mapped metadata refused", "", "", "::ffff:169.254.169.254", true},
		{"aws v6 metadata refused", "", "", "fd00:ec2::254", true},
		{"loopback allowed", "", "", "127.0.0.1", false},
		{"loopback v6 allowed", "", "", "::1", false},
		{"private allowed", "", "", "10.1.2.3", false},
		{"private 192.168 allowed", "", "", "192.168.1.10", false},
		{"ula allowed", "", "", "fd12::1", false},
		{"public allowed", "", "", "203.0.113.5", false},
		{"configured deny adds", "10.0.0.0/8", "", "10.1.2.3", true},
		{"configured deny keeps defaults", "10.0.0.0/8", "", "169.254.169.254", true},
		{"single address deny", "192.0.2.7", "", "192.0.2.7", true},
		{"allow overrides default deny", "", "169.254.169.254", "169.254.169.254", false},
		{"allow is specific", "", "169.254.169.254", "169.254.169.253", true},
		{"more specific deny beats allow", "10.9.9.9/32", "10.0.0.0/8", "10.9.9.9", true},
		{"more specific allow beats deny", "10.0.0.0/8", "10.9.0.0/16", "10.9.9.9", false},
		{"allow wins a tie", "10.0.0.0/8", "10.0.0.0/8", "10.1.1.1", false},
		{"allow-list mode refuses others", "0.0.0.0/0,::/0", "203.0.113.0/24", "198.51.100.1", true},
		{"allow-list mode lets listed in", "0.0.0.0/0,::/0", "203.0.113.0/24", "203.0.113.9", false},
		{"allow-list mode v6", "0.0.0.0/0,::/0", "203.0.113.0/24", "2001:db8::1", true},
		{"unmasked cidr works", "10.1.2.3/8", "", "10.200.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGuard(mustPrefixes(t, tt.deny), mustPrefixes(t, tt.allow))
			err := g.Check(netip.MustParseAddr(tt.addr))
			if (err != nil) != tt.refused {
				t.Fatalf("Check(%s) = %v, want refused=%v", tt.addr, err, tt.refused)
			}
			if err != nil {
				var re *RefusedError
				if !errors.Is(err, ErrRefused) || !errors.As(err, &re) {
					t.Fatalf("error %T does not wrap ErrRefused", err)
				}
				if !strings.Contains(err.Error(), "post-url guard") || !strings.Contains(err.Error(), re.Rule.String()) {
					t.Fatalf("unclear message: %v", err)
				}
				if fromDefaults := tt.deny == "" || strings.HasPrefix(tt.addr, "169.254") || strings.HasPrefix(tt.addr, "fe80"); re.Default != fromDefaults {
					t.Fatalf("Default = %v for rule %s", re.Default, re.Rule)
				}
			}
		})
	}
	var nilGuard *Guard
	if nilGuard.Check(netip.MustParseAddr("169.254.169.254")) == nil {
		t.Fatal("nil guard must apply the defaults")
	}
}

func TestGuardControl(t *testing.T) {
	g := NewGuard(nil, nil)
	tests := []struct {
		address string
		refused bool
		bad     bool
	}{
		{"169.254.169.254:80", true, false},
		{"[fe80::1%lo]:443", true, false},
		{"127.0.0.1:8080", false, false},
		{"[::1]:8080", false, false},
		{"no-port", false, true},
		{"host.example:80", false, true},
	}
	for _, tt := range tests {
		err := g.Control("tcp", tt.address, nil)
		switch {
		case tt.refused && !errors.Is(err, ErrRefused):
			t.Errorf("Control(%s) = %v, want refusal", tt.address, err)
		case tt.bad && err == nil:
			t.Errorf("Control(%s) accepted a non-IP address", tt.address)
		case !tt.refused && !tt.bad && err != nil:
			t.Errorf("Control(%s) = %v", tt.address, err)
		}
	}
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes(" 10.0.0.0/8, 192.0.2.1 ,, ::1, fe80::/10 ")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fe80::/10"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParsePrefixes = %v", got)
	}
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "10.0.0/8", "example.com"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q): want error", bad)
		}
	}
	if p, err := ParsePrefixes(""); err != nil || p != nil {
		t.Fatalf("empty list = %v %v", p, err)
	}
}

// TestGuardCheckHost: every spelling of a link-local or metadata literal is
// refused at create, names are left to the connect-time check, and the
// configured lists are honoured.
func TestGuardCheckHost(t *testing.T) {
	tests := []struct {
		host    string
		deny    string
		allow   string
		refused bool
	}{
		{"169.254.169.254", "", "", true},
		{"169.254.169.254.", "", "", true},
		{"169.254.169.254..", "", "", true},
		{"169.254.1.1", "", "", true},
		{"[fe80::1]", "", "", true},
		{"fe80::1", "", "", true},
		{"fe80::1%eth0", "", "", true},
		{"[fe80::1%25eth0]", "", "", true},
		{"febf::1", "", "", true},
		{"fd00:ec2::254", "", "", true},
		{"[fd00:ec2::254]", "", "", true},
		{"::ffff:169.254.169.254", "", "", true},
		{"[::ffff:a9fe:a9fe]", "", "", true},
		{"0:0:0:0:0:ffff:a9fe:a9fe", "", "", true},
		{"::169.254.169.254", "", "", true},
		{"64:ff9b::169.254.169.254", "", "", true},
		{"0xA9FEA9FE", "", "", true},
		{"0xa9fea9fe", "", "", true},
		{"2852039166", "", "", true},
		{"2852039166.", "", "", true},
		{"0251.0376.0251.0376", "", "", true},
		{"0xa9.0xfe.0xa9.0xfe", "", "", true},
		{"169.254.43518", "", "", true},
		{"169.16689662", "", "", true},
		{"0251.0376.0251.0376.", "", "", true},
		// Allowed: loopback, private, public, names, not-quite-numbers.
		{"127.0.0.1", "", "", false},
		{"2130706433", "", "", false},
		{"::1", "", "", false},
		{"10.0.0.1", "", "", false},
		{"crm.example.com", "", "", false},
		{"crm.example.com.", "", "", false},
		{"metadata.google.internal", "", "", false}, // a name: checked at connect time
		{"0xZZ", "", "", false},
		{"1.2.3.4.5", "", "", false},
		{"4294967296", "", "", false}, // too large for an address: a name
		{"0378.1.1.1", "", "", false}, // 8 is no octal digit: a name
		// The settings.
		{"169.254.169.254", "", "169.254.169.254", false},
		{"0xA9FEA9FE", "", "169.254.0.0/16", false},
		{"10.0.0.1", "10.0.0.0/8", "", true},
		{"012.0.0.1", "10.0.0.0/8", "", true},
		{"::ffff:10.0.0.1", "10.0.0.0/8", "", true},
	}
	for _, tt := range tests {
		g := NewGuard(mustPrefixes(t, tt.deny), mustPrefixes(t, tt.allow))
		err := g.CheckHost(tt.host)
		if got := err != nil; got != tt.refused {
			t.Errorf("CheckHost(%q) deny=%q allow=%q: %v, want refused=%v", tt.host, tt.deny, tt.allow, err, tt.refused)
		}
		if err != nil && !errors.Is(err, ErrRefused) {
			t.Errorf("CheckHost(%q): %v does not wrap ErrRefused", tt.host, err)
		}
	}
}

func TestParseInetAton(t *testing.T) {
	for in, want := range map[string]string{
		"2852039166": "169.254.169.254", "0xA9FEA9FE": "169.254.169.254", "0251.0376.0251.0376": "169.254.169.254",
		"127.1": "127.0.0.1", "10.1.2": "10.1.0.2", "0": "0.0.0.0", "0x7f.1": "127.0.0.1",
	} {
		got, ok := parseInetAton(in)
		if !ok || got.String() != want {
			t.Errorf("parseInetAton(%q) = %v, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "a.b", "256.1.1.1", "1.2.3.256", "1.2.65536", "08", "1..2", "0x1ffffffff"} {
		if got, ok := parseInetAton(in); ok {
			t.Errorf("parseInetAton(%q) = %v, want no address", in, got)
		}
	}
}

// FuzzCheckHost: no panic, and whatever spelling of a host the guard
// reads as an address, the address refused by default is exactly the one
// the plain check refuses.
func FuzzCheckHost(f *testing.F) {
	for _, s := range []string{"169.254.169.254", "0xA9FEA9FE", "2852039166", "[fe80::1%25x]", "::ffff:a9fe:a9fe", "a.b", "1.2.3.4.", "0x", "00", ".", "[]"} {
		f.Add(s)
	}
	g := NewGuard(nil, nil)
	f.Fuzz(func(t *testing.T, host string) {
		err := g.CheckHost(host)
		refusedAny := false
		for _, a := range LiteralAddrs(host) {
			if !a.IsValid() {
				t.Fatalf("LiteralAddrs(%q) has an invalid address", host)
			}
			if g.Check(a) != nil {
				refusedAny = true
			}
		}
		if (err != nil) != refusedAny {
			t.Fatalf("CheckHost(%q) = %v, but the addresses' checks say refused=%v", host, err, refusedAny)
		}
	})
}
