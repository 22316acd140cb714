package httpapi

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/fsm"
)

// NSPrefix is the root of the NetSapiens v2 drop-in (DESIGN.md "NetSapiens
// v2 drop-in"): the same subscriptions as /v1/subscriptions, under
// NetSapiens' paths and rules, with the same bearer tokens.
const NSPrefix = "/ns-api/v2"

// NetSapiens' names of the token roles, returned as user-scope.
var nsUserScopes = map[string]string{
	fsm.RoleSuper:    "Super User",
	fsm.RoleReseller: "Reseller",
	fsm.RoleDomain:   "Office Manager",
	fsm.RoleUser:     "Basic User",
}

// NSSubView is a subscription as the /ns-api/v2 paths show it: SubView with
// NetSapiens datetimes ("2006-01-02 15:04:05", UTC), the caller's
// user-scope, and server_preferred repeating preferred-server (the name of
// NetSapiens' own create example).
type NSSubView struct {
	SubView
	UserScope       string `json:"user-scope"`
	ServerPreferred string `json:"server_preferred,omitempty"`
}

func nsViewOf(s *fsm.Subscription, p Principal) NSSubView {
	return NSSubView{SubView: viewIn(s, NSDatetime), UserScope: nsUserScopes[p.Role], ServerPreferred: s.PreferredServer}
}

// nsRoutes registers the /ns-api/v2 routes. mw is the admin middleware
// (body limit, authentication); the subscription role check is added here.
// As for /v1, middleware is attached per route so a wrong method is a 405.
func (s *Server) nsRoutes(mw []echo.MiddlewareFunc) {
	subMW := slices.Concat(mw, []echo.MiddlewareFunc{s.require(Principal.isAdmin)})
	domMW := slices.Concat(subMW, []echo.MiddlewareFunc{s.requireDomainScope})
	for _, g := range []struct {
		path string
		mw   []echo.MiddlewareFunc
	}{
		{NSPrefix + "/subscriptions", subMW},
		{NSPrefix + "/domains/:domain/subscriptions", domMW},
	} {
		grp := s.e.Group(g.path)
		grp.GET("", func(c echo.Context) error { return s.list(c, nsAPI) }, g.mw...)
		grp.POST("", func(c echo.Context) error { return s.create(c, nsAPI) }, g.mw...)
		grp.GET("/:id", func(c echo.Context) error { return s.get(c, nsAPI) }, g.mw...)
		// NetSapiens' PUT is a partial update.
		grp.PUT("/:id", func(c echo.Context) error { return s.updateSub(c, nsAPI, true) }, g.mw...)
		grp.DELETE("/:id", func(c echo.Context) error { return s.remove(c, nsAPI) }, g.mw...)
	}
}

// pathDomain is the {domain} of a /ns-api/v2/domains/{domain}/... path, ""
// on every other path.
func pathDomain(c echo.Context) string { return c.Param("domain") }

// requireDomainScope refuses a domain path outside the token's scope: a
// domain or user token may use only its own domain's path. (Super and
// reseller tokens may name any domain; hookswitch does not know which
// reseller a domain belongs to, and the subscriptions they reach are still
// bounded by their scope.)
func (s *Server) requireDomainScope(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		d := pathDomain(c)
		if d == "" || d == Wildcard {
			return fail(c, http.StatusBadRequest, "domain", "the path must name one domain")
		}
		if p := principal(c); p.Domain != "" && p.Domain != d {
			return fail(c, http.StatusForbidden, "domain", "outside this token's domain")
		}
		return next(c)
	}
}
