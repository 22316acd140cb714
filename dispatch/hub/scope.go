package hub

import (
	"errors"
	"fmt"

	"github.com/hookswitch/hookswitch/dispatch"
)

// Roles of the tokens a connection may be opened with (the same names as
// the admin API's roles; ingest and node tokens cannot open one).
const (
	RoleSuper    = "super"
	RoleReseller = "reseller"
	RoleDomain   = "domain"
	RoleUser     = "user"
)

// ErrBadScope is returned by Subscribe for a scope no token can have.
var ErrBadScope = errors.New("hub: invalid scope")

// Scope is what a connection's token may ever see, whatever its filters:
//
//   - super: every event;
//   - reseller: events whose reseller field names Reseller;
//   - domain: events whose domain names Domain (for auditlog and
//     auditlog_lite, target_domain: see dispatch.Event.Scope), and, when the
//     token names a Reseller, whose reseller names it too;
//   - user: as domain, and whose user field names User.
//
// This is the scope of a subscription the same token would create with its
// defaults (DESIGN.md "Subscriptions"). auditlog and auditlog_lite events
// need reseller or super scope, as their subscriptions do. A field absent
// from the event never matches a bound scope field.
type Scope struct {
	Role     string
	Reseller string
	Domain   string
	User     string
}

// Validate reports whether the scope is one a token can have.
func (s Scope) Validate() error {
	switch s.Role {
	case RoleSuper:
		return nil
	case RoleReseller:
		if s.Reseller == "" {
			return fmt.Errorf("%w: a reseller scope needs a reseller", ErrBadScope)
		}
	case RoleDomain:
		if s.Domain == "" {
			return fmt.Errorf("%w: a domain scope needs a domain", ErrBadScope)
		}
	case RoleUser:
		if s.Domain == "" || s.User == "" {
			return fmt.Errorf("%w: a user scope needs a domain and a user", ErrBadScope)
		}
	default:
		return fmt.Errorf("%w: role %q cannot watch events", ErrBadScope, s.Role)
	}
	return nil
}

// Allows reports whether an event is inside the scope.
func (s Scope) Allows(ev *dispatch.Event) bool {
	if s.Role == RoleSuper {
		return true
	}
	sc := ev.Scope()
	switch s.Role {
	case RoleReseller:
		return contains(sc.Reseller, s.Reseller)
	case RoleDomain, RoleUser:
		if ev.Model == dispatch.ModelAuditlog || ev.Model == dispatch.ModelAuditlogLite {
			return false
		}
		if !contains(sc.Domain, s.Domain) {
			return false
		}
		if s.Reseller != "" && !contains(sc.Reseller, s.Reseller) {
			return false
		}
		return s.Role == RoleDomain || contains(sc.User, s.User)
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
