package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
)

var (
	pSuper    = Principal{Role: fsm.RoleSuper}
	pReseller = Principal{Role: fsm.RoleReseller, Reseller: "R1"}
	pDomain   = Principal{Role: fsm.RoleDomain, Domain: "D1"}
	pDomainR  = Principal{Role: fsm.RoleDomain, Reseller: "R1", Domain: "D1"}
	pUser     = Principal{Role: fsm.RoleUser, Domain: "D1", User: "U1"}
	pUserR    = Principal{Role: fsm.RoleUser, Reseller: "R1", Domain: "D1", User: "U1"}
	pIngest   = Principal{Role: fsm.RoleIngest}
	pNode     = Principal{Role: fsm.RoleNode}
)

// spec is a subscription scope: "model reseller domain user".
func spec(s string) *fsm.SubSpec {
	f := strings.Fields(s)
	return &fsm.SubSpec{Model: f[0], Reseller: f[1], Domain: f[2], User: f[3]}
}

func TestScopeError(t *testing.T) {
	tests := []struct {
		p     Principal
		spec  string
		field string // "" and ok=true when inside
		ok    bool
	}{
		{pSuper, "* * * *", "", true},
		{pSuper, "auditlog R9 D9 U9", "", true},

		{pReseller, "call R1 * *", "", true},
		{pReseller, "call R1 D5 U5", "", true},
		{pReseller, "auditlog R1 * *", "", true},
		{pReseller, "auditlog_lite R1 D1 *", "", true},
		{pReseller, "* R1 * *", "model", false},
		{pReseller, "call * * *", "reseller", false},
		{pReseller, "call * D1 *", "reseller", false},
		{pReseller, "call R2 D1 *", "reseller", false},
		{pReseller, "call r1 D1 *", "reseller", false}, // exact match

		{pDomain, "call * D1 *", "", true},
		{pDomain, "call R7 D1 U1", "reseller", false}, // unbound: may not name a reseller (seen, though)
		{pDomain, "call * D2 *", "domain", false},
		{pDomain, "call * * *", "domain", false},
		{pDomain, "* * D1 *", "model", false},
		{pDomain, "auditlog * D1 *", "model", false},
		{pDomain, "auditlog_lite * D1 *", "model", false},

		{pDomainR, "call R1 D1 *", "", true},
		{pDomainR, "call * D1 *", "", true},
		{pDomainR, "call R2 D1 *", "reseller", false},
		{pDomainR, "call R1 D2 *", "domain", false},
		{pDomainR, "call R1 * *", "domain", false},

		{pUser, "call * D1 U1", "", true},
		{pUser, "call R3 D1 U1", "reseller", false},
		{pUser, "call * D1 *", "user", false},
		{pUser, "call * D1 U2", "user", false},
		{pUser, "call * D2 U1", "domain", false},
		{pUser, "call * * U1", "domain", false},
		{pUser, "* * D1 U1", "model", false},
		{pUser, "auditlog * D1 U1", "model", false},

		{pUserR, "call R1 D1 U1", "", true},
		{pUserR, "call * D1 U1", "", true},
		{pUserR, "call R2 D1 U1", "reseller", false},

		{pIngest, "call * D1 *", "", false},
		{pNode, "call * D1 *", "", false},
		{Principal{}, "call * D1 *", "", false},
	}
	for _, tt := range tests {
		field, msg := tt.p.scopeError(spec(tt.spec))
		if ok := msg == ""; ok != tt.ok || field != tt.field {
			t.Errorf("%+v scopeError(%s) = (%q, %q), want field %q ok=%v", tt.p, tt.spec, field, msg, tt.field, tt.ok)
		}
		// A domain or user token bound to no reseller sees its domain's
		// subscriptions whatever reseller they name.
		wantSee := tt.ok || (tt.field == "reseller" && tt.p.Reseller == "")
		if got := tt.p.canSee(spec(tt.spec)); got != wantSee {
			t.Errorf("%+v canSee(%s) = %v, want %v", tt.p, tt.spec, got, wantSee)
		}
	}
}

func TestApplyScopeDefaults(t *testing.T) {
	tests := []struct {
		p       Principal
		present []string
		want    string // "reseller domain user" after the defaults
	}{
		{pSuper, nil, "* * *"},
		{pReseller, nil, "R1 * *"},
		{pDomain, nil, "* D1 *"},
		{pDomainR, nil, "R1 D1 *"},
		{pUser, nil, "* D1 U1"},
		{pUserR, nil, "R1 D1 U1"},
		// Present fields are left for the request to set.
		{pUserR, []string{"reseller", "domain", "user"}, "x x x"},
		{pDomainR, []string{"domain"}, "R1 x *"},
		{pUser, []string{"user"}, "* D1 x"},
	}
	for _, tt := range tests {
		s := fsm.SubSpec{Reseller: "x", Domain: "x", User: "x"}
		present := map[string]bool{}
		for _, f := range tt.present {
			present[f] = true
		}
		tt.p.applyScopeDefaults(&s, present)
		if got := s.Reseller + " " + s.Domain + " " + s.User; got != tt.want {
			t.Errorf("%+v with %v present: scope %q, want %q", tt.p, tt.present, got, tt.want)
		}
		// The defaults are inside the token's own scope.
		if len(tt.present) == 0 {
			s.Model = "call"
			if _, msg := tt.p.scopeError(&s); msg != "" {
				t.Errorf("%+v: its default scope %q is outside it: %s", tt.p, tt.want, msg)
			}
		}
	}
}

func TestNormalizeDefaults(t *testing.T) {
	s := fsm.SubSpec{Model: "call", PostURL: "http://127.0.0.1:9/"}
	if fe := normalize(&s, 0, true); fe != nil {
		t.Fatal(fe)
	}
	want := fsm.SubSpec{Model: "call", PostURL: "http://127.0.0.1:9/", Reseller: "*", Domain: "*", User: "*",
		GeoSupport: "yes", Encoding: "json-array", BatchMax: DefaultBatchMax, TimeoutMs: DefaultTimeoutMs}
	if s.Model != want.Model || s.Reseller != "*" || s.Domain != "*" || s.User != "*" || s.GeoSupport != want.GeoSupport ||
		s.Encoding != want.Encoding || s.BatchMax != want.BatchMax || s.TimeoutMs != want.TimeoutMs {
		t.Fatalf("normalize = %+v, want %+v", s, want)
	}
	// Expiry in the past is refused on create only.
	s.ExpiresMs = 1000
	if fe := normalize(&s, 2000, true); fe == nil || fe.Field != "subscription-expires-datetime" {
		t.Fatalf("past expiry on create: %v", fe)
	}
	if fe := normalize(&s, 2000, false); fe != nil {
		t.Fatalf("past expiry on update: %v", fe)
	}
}

func TestCheckPostURL(t *testing.T) {
	for _, ok := range []string{
		"http://example.com", "https://example.com:8443/x?y=1", "http://127.0.0.1:1/", "http://[::1]:65535/",
		"http://10.0.0.1/hook", "HTTP://EXAMPLE.COM/",
	} {
		if fe := checkPostURL(ok); fe != nil {
			t.Errorf("checkPostURL(%q) = %v, want ok", ok, fe)
		}
	}
	for _, bad := range []string{
		"", "ftp://example.com", "not a url", "http://", "http://:80/", "http://example.com:70000",
		"http://example.com:0", "http://example.com:-1", "http://example.com:x", "//example.com/x", "/relative",
		"mailto:a@example.com", "http://[::1",
	} {
		if fe := checkPostURL(bad); fe == nil || fe.Field != "post-url" {
			t.Errorf("checkPostURL(%q) = %v, want a post-url error", bad, fe)
		}
	}
}

func TestSecrets(t *testing.T) {
	a, b := NewSecret(), NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	for _, s := range []string{a, b} {
		if fe := checkSecret(s); fe != nil {
			t.Fatalf("NewSecret() = %q fails checkSecret: %v", s, fe)
		}
	}
	t1, t2 := NewTokenSecret(), NewTokenSecret()
	if t1 == t2 || !strings.HasPrefix(t1, "hs_") || len(t1) < 40 {
		t.Fatalf("token secrets %q %q", t1, t2)
	}
	if h := HashToken(t1); len(h) != 64 || h == HashToken(t2) || strings.Contains(h, t1) {
		t.Fatalf("HashToken(%q) = %q", t1, h)
	}
}

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name string
		set  func(r *http.Request)
		want string
	}{
		{"none", func(r *http.Request) {}, ""},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok") }, "tok"},
		{"bearer lower case", func(r *http.Request) { r.Header.Set("Authorization", "bearer tok") }, "tok"},
		{"bearer upper case", func(r *http.Request) { r.Header.Set("Authorization", "BEARER tok") }, "tok"},
		{"bearer extra spaces", func(r *http.Request) { r.Header.Set("Authorization", "Bearer   tok ") }, "tok"},
		{"basic", func(r *http.Request) { r.SetBasicAuth("realm-user", "tok") }, "tok"},
		{"authkey", func(r *http.Request) { r.URL.RawQuery = "authkey=tok" }, "tok"},
		{"bearer wins over authkey", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer a")
			r.URL.RawQuery = "authkey=b"
		}, "a"},
		{"unknown scheme falls back to authkey", func(r *http.Request) {
			r.Header.Set("Authorization", "Token a")
			r.URL.RawQuery = "authkey=b"
		}, "b"},
		{"bearer without a token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer") }, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/v1/subscriptions", nil)
		tt.set(r)
		if got := TokenFromRequest(r); got != tt.want {
			t.Errorf("%s: TokenFromRequest = %q, want %q", tt.name, got, tt.want)
		}
	}
}
