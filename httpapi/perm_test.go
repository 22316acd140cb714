package httpapi_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// TestPermissionMatrix creates a subscription for every (token, scope
// request) pair and checks the answer: 201 with the expected scope, or 403
// naming the field, with nothing written.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	type role struct{ role, reseller, domain, user string }
	roles := map[string]role{
		"super":     {role: fsm.RoleSuper},
		"reseller":  {fsm.RoleReseller, "R1", "", ""},
		"domain":    {fsm.RoleDomain, "", "D1", ""},
		"domain@R1": {fsm.RoleDomain, "R1", "D1", ""},
		"user":      {fsm.RoleUser, "", "D1", "U1"},
	}
	tokens := map[string]string{"super": tn.newToken(fsm.RoleSuper, "", "", "")}
	for name, r := range roles {
		if name != "super" {
			tokens[name] = tn.newToken(r.role, r.reseller, r.domain, r.user)
		}
	}

	// ok is a 201 with the scope (reseller, domain, user) the subscription
	// gets; no(field) is a 403 naming field.
	type outcome struct {
		code  int
		field string
		scope [3]string
	}
	ok := func(reseller, domain, user string) outcome {
		return outcome{code: http.StatusCreated, scope: [3]string{reseller, domain, user}}
	}
	no := func(field string) outcome { return outcome{code: http.StatusForbidden, field: field} }

	tests := []struct {
		token string
		scope string // name of the request
		body  fields // the request's scope fields (model and post-url added)
		want  outcome
	}{
		// Own scope.
		{"super", "own scope", fields{"reseller": "R1", "domain": "D1", "user": "U1"}, ok("R1", "D1", "U1")},
		{"reseller", "own scope", fields{"reseller": "R1"}, ok("R1", "*", "*")},
		{"domain", "own scope", fields{"domain": "D1"}, ok("*", "D1", "*")},
		{"domain@R1", "own scope", fields{"reseller": "R1", "domain": "D1"}, ok("R1", "D1", "*")},
		{"user", "own scope", fields{"domain": "D1", "user": "U1"}, ok("*", "D1", "U1")},

		// Defaults filled from the token's binding.
		{"super", "defaults", fields{}, ok("*", "*", "*")},
		{"reseller", "defaults", fields{}, ok("R1", "*", "*")},
		{"domain", "defaults", fields{}, ok("*", "D1", "*")},
		{"domain@R1", "defaults", fields{}, ok("R1", "D1", "*")},
		{"user", "defaults", fields{}, ok("*", "D1", "U1")},
		{"user", "defaults with user given", fields{"user": "U1"}, ok("*", "D1", "U1")},

		// reseller "*": super scope for reseller tokens; a domain or user
		// token may leave it "*" for its own domain (narrower than any
		// reseller).
		{"super", `reseller "*"`, fields{"reseller": "*", "domain": "*"}, ok("*", "*", "*")},
		{"reseller", `reseller "*"`, fields{"reseller": "*"}, no("reseller")},
		{"reseller", `reseller "*" with a domain`, fields{"reseller": "*", "domain": "D1"}, no("reseller")},
		{"domain", `reseller "*"`, fields{"reseller": "*", "domain": "D1"}, ok("*", "D1", "*")},
		{"domain@R1", `reseller "*"`, fields{"reseller": "*", "domain": "D1"}, ok("*", "D1", "*")},
		{"user", `reseller "*"`, fields{"reseller": "*", "domain": "D1", "user": "U1"}, ok("*", "D1", "U1")},

		// domain "*": reseller or super scope.
		{"super", `domain "*"`, fields{"domain": "*"}, ok("*", "*", "*")},
		{"reseller", `domain "*"`, fields{"domain": "*"}, ok("R1", "*", "*")},
		{"domain", `domain "*"`, fields{"domain": "*"}, no("domain")},
		{"domain@R1", `domain "*"`, fields{"reseller": "R1", "domain": "*"}, no("domain")},
		{"user", `domain "*"`, fields{"domain": "*", "user": "U1"}, no("domain")},

		// model "*": super only.
		{"super", `model "*"`, fields{"model": "*"}, ok("*", "*", "*")},
		{"reseller", `model "*"`, fields{"model": "*"}, no("model")},
		{"domain", `model "*"`, fields{"model": "*"}, no("model")},
		{"domain@R1", `model "*"`, fields{"model": "*"}, no("model")},
		{"user", `model "*"`, fields{"model": "*"}, no("model")},

		// auditlog and auditlog_lite: reseller or super.
		{"super", "model auditlog", fields{"model": "auditlog"}, ok("*", "*", "*")},
		{"reseller", "model auditlog", fields{"model": "auditlog"}, ok("R1", "*", "*")},
		{"domain", "model auditlog", fields{"model": "auditlog"}, no("model")},
		{"domain@R1", "model auditlog", fields{"model": "auditlog"}, no("model")},
		{"user", "model auditlog", fields{"model": "auditlog"}, no("model")},
		{"super", "model auditlog_lite", fields{"model": "auditlog_lite", "domain": "D1"}, ok("*", "D1", "*")},
		{"reseller", "model auditlog_lite", fields{"model": "auditlog_lite", "domain": "D1"}, ok("R1", "D1", "*")},
		{"domain", "model auditlog_lite", fields{"model": "auditlog_lite"}, no("model")},
		{"domain@R1", "model auditlog_lite", fields{"model": "auditlog_lite"}, no("model")},
		{"user", "model auditlog_lite", fields{"model": "auditlog_lite"}, no("model")},

		// Another reseller. A domain or user token not bound to a reseller
		// may narrow its own domain to any reseller.
		{"super", "other reseller", fields{"reseller": "R2"}, ok("R2", "*", "*")},
		{"reseller", "other reseller", fields{"reseller": "R2"}, no("reseller")},
		{"domain", "other reseller", fields{"reseller": "R2"}, no("reseller")},
		{"domain@R1", "other reseller", fields{"reseller": "R2"}, no("reseller")},
		{"user", "other reseller", fields{"reseller": "R2"}, no("reseller")},

		// Another domain.
		{"super", "other domain", fields{"domain": "D2"}, ok("*", "D2", "*")},
		{"reseller", "other domain", fields{"domain": "D2"}, ok("R1", "D2", "*")},
		{"domain", "other domain", fields{"domain": "D2"}, no("domain")},
		{"domain@R1", "other domain", fields{"domain": "D2"}, no("domain")},
		{"user", "other domain", fields{"domain": "D2"}, no("domain")},

		// Another user, and every user.
		{"super", "other user", fields{"user": "U2"}, ok("*", "*", "U2")},
		{"reseller", "other user", fields{"user": "U2"}, ok("R1", "*", "U2")},
		{"domain", "other user", fields{"user": "U2"}, ok("*", "D1", "U2")},
		{"domain@R1", "other user", fields{"user": "U2"}, ok("R1", "D1", "U2")},
		{"user", "other user", fields{"user": "U2"}, no("user")},
		{"user", `user "*"`, fields{"user": "*"}, no("user")},
		{"domain", `user "*"`, fields{"user": "*"}, ok("*", "D1", "*")},
	}
	seen := map[string]bool{}
	for i, tt := range tests {
		name := tt.token + "/" + tt.scope
		if seen[name] {
			t.Fatalf("duplicate row %s", name)
		}
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			id := fmt.Sprintf("perm-%02d", i)
			body := sub(fields{"id": id})
			for k, v := range tt.body {
				body[k] = v
			}
			r := tn.do(http.MethodPost, "/v1/subscriptions", tokens[tt.token], body)
			if tt.want.code == http.StatusForbidden {
				wantErr(t, "create", r, http.StatusForbidden, tt.want.field)
				wantErr(t, "GET by super after a 403", tn.do(http.MethodGet, "/v1/subscriptions/"+id, tn.root, nil), http.StatusNotFound, "id")
				return
			}
			want(t, "create", r, http.StatusCreated)
			v := decode[httpapi.SubView](t, "create", r)
			if got := [3]string{v.Reseller, v.Domain, v.User}; got != tt.want.scope {
				t.Fatalf("scope (reseller, domain, user) = %q, want %q", got, tt.want.scope)
			}
			if v.ID != id || v.Secret == "" {
				t.Fatalf("created %q with secret %v, want %q with a secret", v.ID, v.Secret != "", id)
			}
			// The creator sees what it created.
			want(t, "GET by the creator", tn.do(http.MethodGet, "/v1/subscriptions/"+id, tokens[tt.token], nil), http.StatusOK)
		})
	}
}

// TestVisibility checks that a token sees and changes only the
// subscriptions inside its scope, and that others' look absent (404, not 403).
func TestVisibility(t *testing.T) {
	t.Parallel()
	tn := mustStartNode(t)
	for _, s := range []fields{
		{"id": "r1-d1", "reseller": "R1", "domain": "D1"},
		{"id": "r1-d1-u1", "reseller": "R1", "domain": "D1", "user": "U1"},
		{"id": "r1-d1-u2", "reseller": "R1", "domain": "D1", "user": "U2"},
		{"id": "r1-d2", "reseller": "R1", "domain": "D2"},
		{"id": "any-d1", "domain": "D1"},
		{"id": "r2-d1", "reseller": "R2", "domain": "D1"},
		{"id": "r2-d3", "reseller": "R2", "domain": "D3"},
		{"id": "r1-any", "reseller": "R1"},
		{"id": "audit-r1", "reseller": "R1", "domain": "D1", "model": "auditlog"},
	} {
		tn.createSub(tn.root, sub(s))
	}
	reseller := tn.newToken(fsm.RoleReseller, "R1", "", "")
	domain := tn.newToken(fsm.RoleDomain, "", "D1", "")
	domainR1 := tn.newToken(fsm.RoleDomain, "R1", "D1", "")
	user := tn.newToken(fsm.RoleUser, "", "D1", "U1")

	all := []string{"any-d1", "audit-r1", "r1-any", "r1-d1", "r1-d1-u1", "r1-d1-u2", "r1-d2", "r2-d1", "r2-d3"}
	wantIDs(t, "super lists", tn.listIDs(tn.root, ""), all...)
	wantIDs(t, "reseller R1 lists", tn.listIDs(reseller, ""), "audit-r1", "r1-any", "r1-d1", "r1-d1-u1", "r1-d1-u2", "r1-d2")
	wantIDs(t, "domain D1 lists", tn.listIDs(domain, ""), "any-d1", "r1-d1", "r1-d1-u1", "r1-d1-u2", "r2-d1")
	wantIDs(t, "domain D1@R1 lists", tn.listIDs(domainR1, ""), "any-d1", "r1-d1", "r1-d1-u1", "r1-d1-u2")
	wantIDs(t, "user D1/U1 lists", tn.listIDs(user, ""), "r1-d1-u1")
	wantIDs(t, "domain D1 lists ?domain=D2", tn.listIDs(domain, "domain=D2"))
	wantIDs(t, "domain D1 lists ?domain=D1&model=call", tn.listIDs(domain, "domain=D1&model=call"), "any-d1", "r1-d1", "r1-d1-u1", "r1-d1-u2", "r2-d1")

	// Out of scope looks absent, for every verb, and changes nothing.
	hidden := map[string][]string{
		"reseller":  {"any-d1", "r2-d1", "r2-d3"},
		"domain":    {"r1-d2", "r2-d3", "r1-any", "audit-r1"},
		"domain@R1": {"r1-d2", "r2-d1", "r2-d3"},
		"user":      {"r1-d1", "r1-d1-u2", "any-d1", "r1-d2"},
	}
	toks := map[string]string{"reseller": reseller, "domain": domain, "domain@R1": domainR1, "user": user}
	before := map[string]httpapi.SubView{}
	for _, id := range all {
		before[id] = tn.getSub(id)
	}
	for name, ids := range hidden {
		for _, id := range ids {
			for _, c := range []struct {
				method, path string
				body         any
			}{
				{http.MethodGet, "", nil},
				{http.MethodPut, "", sub(fields{"domain": "D1"})},
				{http.MethodPatch, "", fields{"batch-max": 9}},
				{http.MethodDelete, "", nil},
				{http.MethodPost, "/pause", nil},
				{http.MethodPost, "/resume", nil},
				{http.MethodGet, "/secret", nil},
			} {
				path := "/v1/subscriptions/" + id + c.path
				wantErr(t, name+" token: "+c.method+" "+path, tn.do(c.method, path, toks[name], c.body), http.StatusNotFound, "id")
			}
		}
	}
	for _, id := range all {
		sameView(t, "after out-of-scope calls: "+id, tn.getSub(id), before[id])
	}

	// A token cannot move its own subscription out of its scope.
	for _, tt := range []struct {
		token, method, id string
		body              fields
		field             string
	}{
		{"domain", http.MethodPatch, "r1-d1", fields{"domain": "D2"}, "domain"},
		{"domain", http.MethodPatch, "r1-d1", fields{"domain": "*"}, "domain"},
		{"domain", http.MethodPatch, "r1-d1", fields{"model": "auditlog"}, "model"},
		{"domain", http.MethodPut, "r1-d1", sub(fields{"domain": "D2"}), "domain"},
		{"domain@R1", http.MethodPatch, "r1-d1", fields{"reseller": "R2"}, "reseller"},
		{"reseller", http.MethodPatch, "r1-d2", fields{"reseller": "R2"}, "reseller"},
		{"reseller", http.MethodPatch, "r1-d2", fields{"reseller": "*"}, "reseller"},
		{"reseller", http.MethodPatch, "r1-d2", fields{"model": "*"}, "model"},
		{"user", http.MethodPatch, "r1-d1-u1", fields{"user": "U2"}, "user"},
		{"user", http.MethodPatch, "r1-d1-u1", fields{"user": "*"}, "user"},
		// A PUT without user fills the token's user, so this one is fine
		// scope-wise; with a user of "*" it is not.
		{"user", http.MethodPut, "r1-d1-u1", sub(fields{"user": "*"}), "user"},
	} {
		what := fmt.Sprintf("%s token: %s %s %v", tt.token, tt.method, tt.id, tt.body)
		wantErr(t, what, tn.do(tt.method, "/v1/subscriptions/"+tt.id, toks[tt.token], tt.body), http.StatusForbidden, tt.field)
	}
	for _, id := range all {
		sameView(t, "after out-of-scope updates: "+id, tn.getSub(id), before[id])
	}

	// Inside the scope everything works.
	r := tn.do(http.MethodPatch, "/v1/subscriptions/r1-d1", domain, fields{"user": "U7", "batch-max": 9})
	want(t, "domain token PATCH of its own", r, http.StatusOK)
	if v := decode[httpapi.SubView](t, "PATCH", r); v.User != "U7" || v.BatchMax != 9 || v.Domain != "D1" || v.Reseller != "R1" {
		t.Fatalf("PATCH by the domain token gave %+v", v)
	}
	r = tn.do(http.MethodPut, "/v1/subscriptions/r1-d1-u1", user, sub(fields{"model": "cdr"}))
	want(t, "user token PUT of its own", r, http.StatusOK)
	if v := decode[httpapi.SubView](t, "PUT", r); v.Reseller != "*" || v.Domain != "D1" || v.User != "U1" || v.Model != "cdr" {
		t.Fatalf("PUT by the user token gave scope %s/%s/%s model %s, want */D1/U1 cdr", v.Reseller, v.Domain, v.User, v.Model)
	}
	want(t, "reseller pauses r1-d2", tn.do(http.MethodPost, "/v1/subscriptions/r1-d2/pause", reseller, nil), http.StatusOK)
	want(t, "reseller reads the secret of audit-r1", tn.do(http.MethodGet, "/v1/subscriptions/audit-r1/secret", reseller, nil), http.StatusOK)
	want(t, "domain@R1 deletes any-d1", tn.do(http.MethodDelete, "/v1/subscriptions/any-d1", domainR1, nil), http.StatusNoContent)
	wantIDs(t, "domain D1 lists after the changes", tn.listIDs(domain, ""), "r1-d1", "r1-d1-u1", "r1-d1-u2", "r2-d1")
}
