package httpapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"

	"github.com/hookswitch/hookswitch/fsm"
)

// Wildcard is the "any" value of a scope field.
const Wildcard = "*"

// Principal is the authenticated caller of a request.
type Principal struct {
	TokenID  string
	Role     string
	Reseller string
	Domain   string
	User     string
}

func principalOf(t *fsm.Token) Principal {
	return Principal{TokenID: t.ID, Role: t.Role, Reseller: t.Reseller, Domain: t.Domain, User: t.User}
}

// HashToken is how tokens are stored and looked up: hex SHA-256. Tokens are
// 32 random bytes, so a fast hash is enough (there is nothing to brute-force).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// NewTokenSecret returns a fresh token string.
func NewTokenSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return "hs_" + base64.RawURLEncoding.EncodeToString(b[:])
}

func randomID(prefix string, nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// isAdmin reports whether the principal may use the subscription API at all.
func (p Principal) isAdmin() bool {
	switch p.Role {
	case fsm.RoleSuper, fsm.RoleReseller, fsm.RoleDomain, fsm.RoleUser:
		return true
	}
	return false
}

// applyScopeDefaults fills the scope fields the request left out from the
// token's own binding: a reseller token's subscriptions default to its
// reseller, a domain token's to its domain, a user token's to its user.
// Fields still unset become "*".
func (p Principal) applyScopeDefaults(spec *fsm.SubSpec, present map[string]bool) {
	if !present["reseller"] {
		spec.Reseller = orWildcard(p.Reseller)
	}
	if !present["domain"] {
		spec.Domain = orWildcard(p.Domain)
	}
	if !present["user"] {
		spec.User = orWildcard(p.User)
	}
}

func orWildcard(s string) string {
	if s == "" {
		return Wildcard
	}
	return s
}

// scopeError says why a subscription's scope is outside the principal's,
// naming the field; "" when it is inside.
//
// The rules are NetSapiens': model "*" and reseller "*" need super scope
// (reseller "*" with a domain named is narrower than any reseller, so a
// domain or user token may leave reseller at "*" for its own domain);
// domain "*" needs reseller or super scope; auditlog models need reseller or
// super scope. Beyond that, a subscription must lie inside the token's
// binding: a reseller token's reseller, a domain token's domain, a user
// token's domain and user.
func (p Principal) scopeError(s *fsm.SubSpec) (field, msg string) {
	if p.Role == fsm.RoleSuper {
		return "", ""
	}
	if !p.isAdmin() {
		return "", "this token's role may not manage subscriptions"
	}
	if s.Model == Wildcard {
		return "model", `model "*" needs super scope`
	}
	if (s.Model == "auditlog" || s.Model == "auditlog_lite") && p.Role != fsm.RoleReseller {
		return "model", s.Model + " needs reseller or super scope"
	}
	if s.Domain == Wildcard && p.Role != fsm.RoleReseller {
		return "domain", `domain "*" needs reseller or super scope`
	}
	switch p.Role {
	case fsm.RoleReseller:
		if s.Reseller != p.Reseller {
			if s.Reseller == Wildcard {
				return "reseller", `reseller "*" needs super scope`
			}
			return "reseller", "outside this token's reseller"
		}
	case fsm.RoleDomain:
		if s.Domain != p.Domain {
			return "domain", "outside this token's domain"
		}
		if field, msg := p.resellerError(s); msg != "" {
			return field, msg
		}
	case fsm.RoleUser:
		if s.Domain != p.Domain {
			return "domain", "outside this token's domain"
		}
		if s.User != p.User {
			return "user", "outside this token's user"
		}
		if field, msg := p.resellerError(s); msg != "" {
			return field, msg
		}
	}
	return "", ""
}

// resellerError checks the reseller of a domain or user token's
// subscription: "*" (its domain bounds it), or the token's own reseller. A
// token bound to no reseller may not name one: that would make its
// subscription visible to that reseller's tokens.
func (p Principal) resellerError(s *fsm.SubSpec) (field, msg string) {
	if s.Reseller == Wildcard || s.Reseller == p.Reseller {
		return "", ""
	}
	return "reseller", "outside this token's reseller"
}

// updateScopeError is scopeError for a change of cur into next: a reseller
// that a visible subscription already names may stay.
func (p Principal) updateScopeError(cur, next *fsm.SubSpec) (field, msg string) {
	if next.Reseller == cur.Reseller && p.canSee(cur) {
		c := *next
		c.Reseller = Wildcard
		if p.Reseller != "" {
			c.Reseller = p.Reseller
		}
		next = &c
	}
	return p.scopeError(next)
}

// canSee reports whether the principal may see an existing subscription.
// A domain or user token bound to no reseller sees its domain's
// subscriptions whatever reseller they name (it may change them only into
// reseller "*").
func (p Principal) canSee(s *fsm.SubSpec) bool {
	if (p.Role == fsm.RoleDomain || p.Role == fsm.RoleUser) && p.Reseller == "" && s.Reseller != Wildcard {
		c := *s
		c.Reseller = Wildcard
		s = &c
	}
	_, msg := p.scopeError(s)
	return msg == ""
}
