package httpapi

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/fsm"
)

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Name     string `json:"name,omitempty"`
	Role     string `json:"role"`
	Reseller string `json:"reseller,omitempty"`
	Domain   string `json:"domain,omitempty"`
	User     string `json:"user,omitempty"`
}

// TokenView is a token as the API shows it. Token (the secret) is present
// only in the answer to its creation.
type TokenView struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Role     string `json:"role"`
	Reseller string `json:"reseller,omitempty"`
	Domain   string `json:"domain,omitempty"`
	User     string `json:"user,omitempty"`
	Created  string `json:"created"`
	Token    string `json:"token,omitempty"`
}

func tokenView(t *fsm.Token) TokenView {
	return TokenView{ID: t.ID, Name: t.Name, Role: t.Role, Reseller: t.Reseller, Domain: t.Domain, User: t.User, Created: msTime(t.CreatedMs)}
}

const maxTokenName = 128

// check validates a token request: each role carries exactly the scope
// fields it is bound by.
func (r *TokenRequest) check() *fieldError {
	if len(r.Name) > maxTokenName {
		return badField("name", "is longer than %d characters", maxTokenName)
	}
	for _, f := range []struct{ name, v string }{{"name", r.Name}, {"role", r.Role}, {"reseller", r.Reseller}, {"domain", r.Domain}, {"user", r.User}} {
		if !printable(f.v) {
			return badField(f.name, "%s", notPrintable)
		}
	}
	need := map[string]bool{}
	switch r.Role {
	case fsm.RoleSuper, fsm.RoleIngest:
	case fsm.RoleReseller:
		need["reseller"] = true
	case fsm.RoleDomain:
		need["domain"] = true
	case fsm.RoleUser:
		need["domain"], need["user"] = true, true
	case "":
		return badField("role", "is required")
	default:
		return badField("role", "must be super, reseller, domain, user or ingest")
	}
	for _, f := range []struct {
		name, v string
	}{{"reseller", r.Reseller}, {"domain", r.Domain}, {"user", r.User}} {
		switch {
		case need[f.name] && (f.v == "" || f.v == Wildcard):
			return badField(f.name, "is required for role %s", r.Role)
		case len(f.v) > MaxScopeLen:
			return badField(f.name, "is longer than %d characters", MaxScopeLen)
		case f.v == Wildcard:
			return badField(f.name, `a token is bound to a named scope, not "*"`)
		}
	}
	// A domain or user token may name its reseller; super and ingest
	// tokens are not bound to any scope.
	if (r.Role == fsm.RoleSuper || r.Role == fsm.RoleIngest) && (r.Reseller+r.Domain+r.User) != "" {
		return badField("role", "%s tokens are not bound to a scope", r.Role)
	}
	if r.Role == fsm.RoleReseller && (r.Domain+r.User) != "" {
		return badField("domain", "reseller tokens are bound to a reseller only")
	}
	if r.Role == fsm.RoleDomain && r.User != "" {
		return badField("user", "domain tokens are not bound to a user")
	}
	return nil
}

func (s *Server) createToken(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req TokenRequest
	if err := strictJSON(body, &req); err != nil {
		return fail(c, http.StatusBadRequest, "", "body is not a valid token request: "+err.Error())
	}
	if fe := req.check(); fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	secret := NewTokenSecret()
	t := fsm.Token{
		ID: randomID("tok_", 6), Name: req.Name, Role: req.Role,
		Reseller: req.Reseller, Domain: req.Domain, User: req.User,
		Hash: HashToken(secret), CreatedMs: s.cfg.Now().UnixMilli(),
	}
	res, err := s.b.Apply(c.Request().Context(), &fsm.CreateToken{Token: t})
	if err != nil {
		return s.applyErr(c, err)
	}
	if res.Err != nil {
		return s.applyErr(c, res.Err)
	}
	v := tokenView(res.Token)
	v.Token = secret
	return c.JSON(http.StatusCreated, v)
}

func (s *Server) listTokens(c echo.Context) error {
	out := []TokenView{}
	s.b.Read(func(st *fsm.State) {
		for _, t := range st.SortedTokens() {
			out = append(out, tokenView(t))
		}
	})
	return c.JSON(http.StatusOK, out)
}

func (s *Server) revokeToken(c echo.Context) error {
	id := c.Param("id")
	var role string
	s.b.Read(func(st *fsm.State) {
		if t, ok := st.Tokens[id]; ok {
			role = t.Role
		}
	})
	if role == fsm.RoleNode {
		// Node tokens carry forwarded writes and the event mesh; they go
		// away with their node (DELETE /v1/cluster/nodes/{id}).
		return fail(c, http.StatusForbidden, "id", "node tokens are removed with their node, not revoked")
	}
	res, err := s.b.Apply(c.Request().Context(), &fsm.RevokeToken{ID: id})
	if err != nil {
		return s.applyErr(c, err)
	}
	if errors.Is(res.Err, fsm.ErrNotFound) {
		return fail(c, http.StatusNotFound, "id", "no such token")
	}
	return c.NoContent(http.StatusNoContent)
}
