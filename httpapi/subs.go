package httpapi

import (
	"errors"
	"io"
	"maps"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/fsm"
)

func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge)
		}
		// echo's BodyLimit reports an over-long body as this HTTPError.
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, echo.NewHTTPError(http.StatusBadRequest, "cannot read body: "+err.Error())
	}
	return b, nil
}

// lookup returns a copy of the subscription if the caller may see it (and,
// on a /ns-api/v2/domains/{domain}/... path, if it is of that domain).
func (s *Server) lookup(c echo.Context, id string) (*fsm.Subscription, bool) {
	var sub *fsm.Subscription
	s.b.Read(func(st *fsm.State) {
		if cur, ok := st.Subs[id]; ok {
			sub = cur.Clone()
		}
	})
	if sub == nil || !principal(c).canSee(&sub.SubSpec) {
		return nil, false
	}
	if d := pathDomain(c); d != "" && sub.Domain != d {
		return nil, false
	}
	return sub, true
}

// flavor is how a family of paths speaks: /v1, or NetSapiens' /ns-api/v2
// (DESIGN.md "NetSapiens v2 drop-in": its status codes, request aliases,
// user-scope and datetime layout). Both serve the same subscriptions with
// the same rules.
type flavor struct {
	ns bool
}

var (
	v1API = flavor{}
	nsAPI = flavor{ns: true}
)

// view renders a subscription as this flavor answers it, with its secret
// only when secret is true (the answer to a create).
func (fl flavor) view(c echo.Context, sub *fsm.Subscription, secret bool) any {
	if !fl.ns {
		v := viewOf(sub)
		if secret {
			v.Secret = sub.Secret
		}
		return v
	}
	v := nsViewOf(sub, principal(c))
	if secret {
		v.Secret = sub.Secret
	}
	return v
}

// created and updated are the success statuses: NetSapiens answers a create
// 200 and an update 202 (a delete too: see remove).
func (fl flavor) created() int {
	if fl.ns {
		return http.StatusOK
	}
	return http.StatusCreated
}

func (fl flavor) updated() int {
	if fl.ns {
		return http.StatusAccepted
	}
	return http.StatusOK
}

// checkPinned refuses a geo "no" subscription whose preferred server (its
// home node, which alone may send it) is not a cluster member that can
// send: it would silently never be delivered. A geo "yes" subscription may
// name any server (NetSapiens' own example names a host): the assignment
// rule passes over one that is not a member. cur is the subscription being
// updated (nil on create): a pin it already had is not checked again, so an
// unrelated change still works after its node was removed.
func (s *Server) checkPinned(spec, cur *fsm.SubSpec) *fieldError {
	if spec.GeoSupport != geoNo || spec.PreferredServer == "" {
		return nil
	}
	if cur != nil && cur.GeoSupport == geoNo && cur.PreferredServer == spec.PreferredServer {
		return nil
	}
	var member bool
	s.b.Read(func(st *fsm.State) {
		n, ok := st.Nodes[spec.PreferredServer]
		member = ok && !n.Witness
	})
	if !member {
		return badField("preferred-server", "%q is not a node of this cluster that sends events; a subscription-geo-support \"no\" subscription is sent by that node alone", spec.PreferredServer)
	}
	return nil
}

func notFound(c echo.Context) error {
	return fail(c, http.StatusNotFound, "id", "no such subscription")
}

func (s *Server) createSub(c echo.Context) error { return s.create(c, v1API) }

func (s *Server) create(c echo.Context, fl flavor) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	in, fe := parseSubInput(body, fl.ns)
	if fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	if d := pathDomain(c); d != "" {
		if fe := in.pinDomain(d); fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
	}
	for _, f := range slices.Sorted(maps.Keys(in.raw)) {
		if readOnlyFields[f] {
			return fail(c, http.StatusBadRequest, f, "is read-only")
		}
	}
	p := principal(c)
	now := s.cfg.Now().UnixMilli()
	sub := &fsm.Subscription{CreatedMs: now, UpdatedMs: now, StartMs: now - creationSkewMs, HomeNode: s.b.NodeID(), Origin: s.b.NodeID(), Status: fsm.StatusPending}
	if err := in.str("id", &sub.ID); err != nil {
		return failField(c, http.StatusBadRequest, err)
	}
	if sub.ID == "" {
		sub.ID = randomID("sub_", 10)
	} else if !subIDPattern.MatchString(sub.ID) {
		return fail(c, http.StatusBadRequest, "id", "must match [A-Za-z0-9_-]{1,64}")
	}
	p.applyScopeDefaults(&sub.SubSpec, in.present())
	if fe := in.mergeInto(&sub.SubSpec); fe != nil {
		return failField(c, http.StatusBadRequest, in.named(fe))
	}
	if fe := normalize(&sub.SubSpec, now, true); fe != nil {
		return failField(c, http.StatusBadRequest, in.named(fe))
	}
	if field, msg := p.scopeError(&sub.SubSpec); msg != "" {
		return fail(c, http.StatusForbidden, field, msg)
	}
	if fe := s.checkPinned(&sub.SubSpec, nil); fe != nil {
		return failField(c, http.StatusBadRequest, in.named(fe))
	}
	if fe := s.guardPostURL(sub.PostURL); fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	if sub.Secret == "" {
		sub.Secret = NewSecret()
	}
	// The home node of a pinned (geo "no") subscription is its preferred
	// server, else the node that created it, and it sends it. A geo "yes"
	// subscription is unassigned until the leader's reconciler applies the
	// assignment rule (within half a report interval); its cursors start
	// at its creation time, so nothing ingested meanwhile is missed.
	if sub.GeoSupport == geoNo {
		if sub.PreferredServer != "" {
			sub.HomeNode = sub.PreferredServer
		}
		sub.Owner = sub.HomeNode
	}
	// Unique: the (model, post-url, reseller, domain, user) rule is checked
	// where creates are serialized, in the FSM, so two concurrent creates
	// cannot both win.
	sub.CreatedBy = p.TokenID
	cmd := &fsm.CreateSub{Sub: *sub, Unique: true}
	if !isSuper(p) {
		cmd.MaxPerCreator = s.cfg.MaxSubsPerToken
	}
	res, err := s.b.Apply(c.Request().Context(), cmd)
	if err != nil {
		return s.applyErr(c, err)
	}
	switch {
	case errors.Is(res.Err, fsm.ErrLimit):
		return s.tooManySubs(c)
	case errors.Is(res.Err, fsm.ErrExists):
		// A create retried after a lost answer (leadership moved) may find
		// its own first attempt committed: that is a success.
		if cur, ok := s.lookup(c, sub.ID); ok && cur.Secret == sub.Secret && cur.CreatedMs == sub.CreatedMs && cur.HomeNode == sub.HomeNode {
			return c.JSON(fl.created(), fl.view(c, cur, true))
		}
		return fail(c, http.StatusConflict, "id", "a subscription with this id exists")
	case errors.Is(res.Err, fsm.ErrDuplicate):
		msg := "a subscription with a matching set of parameters (model, post-url, reseller, domain, user) already exists"
		if res.Sub != nil && p.canSee(&res.Sub.SubSpec) {
			msg += ": " + res.Sub.ID
		}
		return fail(c, http.StatusConflict, "", msg)
	case res.Err != nil:
		return s.applyErr(c, res.Err)
	}
	return c.JSON(fl.created(), fl.view(c, res.Sub, true))
}

func (s *Server) listSubs(c echo.Context) error { return s.list(c, v1API) }

func (s *Server) list(c echo.Context, fl flavor) error {
	q := c.QueryParams()
	p := principal(c)
	pd := pathDomain(c)
	out := []any{}
	s.b.Read(func(st *fsm.State) {
		for _, sub := range st.SortedSubs() {
			if !p.canSee(&sub.SubSpec) || (pd != "" && sub.Domain != pd) {
				continue
			}
			if m := q.Get("model"); m != "" && sub.Model != m {
				continue
			}
			if d := q.Get("domain"); d != "" && sub.Domain != d {
				continue
			}
			if st := q.Get("status"); st != "" && viewStatus(sub) != st {
				continue
			}
			out = append(out, fl.view(c, sub, false))
		}
	})
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getSub(c echo.Context) error { return s.get(c, v1API) }

func (s *Server) get(c echo.Context, fl flavor) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	return c.JSON(http.StatusOK, fl.view(c, sub, false))
}

func (s *Server) getSecret(c echo.Context) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	return c.JSON(http.StatusOK, map[string]string{"secret": sub.Secret})
}

func (s *Server) putSub(c echo.Context) error   { return s.updateSub(c, v1API, false) }
func (s *Server) patchSub(c echo.Context) error { return s.updateSub(c, v1API, true) }

// updateSub serves PUT (merge=false: every writable field is replaced, an
// absent one takes its default; an absent secret is kept) and PATCH
// (merge=true: only the fields given change; NetSapiens' PUT). Read-only
// fields may be sent back as GET returned them and are ignored, except that
// posts-count and error-count may be set to 0 to reset them.
func (s *Server) updateSub(c echo.Context, fl flavor, merge bool) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	in, fe := parseSubInput(body, fl.ns)
	if fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	if d := pathDomain(c); d != "" {
		if fe := in.pinDomain(d); fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
	}
	id := c.Param("id")
	var bodyID string
	if fe := in.str("id", &bodyID); fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	if bodyID != "" && bodyID != id {
		return fail(c, http.StatusBadRequest, "id", "does not match the subscription in the path")
	}
	p := principal(c)
	for attempt := 0; ; attempt++ {
		cur, ok := s.lookup(c, id)
		if !ok {
			return notFound(c)
		}
		cmd := &fsm.UpdateSub{ID: id, ExpectVersion: cur.Version, AtMs: s.cfg.Now().UnixMilli()}
		for _, rc := range []struct {
			field string
			cur   uint64
			reset *bool
		}{{"posts-count", cur.Counters.Posts, &cmd.ResetPosts}, {"error-count", cur.Counters.Errors, &cmd.ResetErrors}} {
			n, given, fe := in.uint(rc.field)
			if fe != nil {
				return failField(c, http.StatusBadRequest, fe)
			}
			if given && n == 0 {
				*rc.reset = true
			} else if given && n != rc.cur {
				return fail(c, http.StatusBadRequest, rc.field, "may only be reset to 0")
			}
		}
		spec := cur.SubSpec
		if !merge {
			spec = fsm.SubSpec{Secret: cur.Secret}
			p.applyScopeDefaults(&spec, in.present())
		}
		if fe := in.mergeInto(&spec); fe != nil {
			return failField(c, http.StatusBadRequest, in.named(fe))
		}
		if spec.Secret == "" {
			spec.Secret = cur.Secret
		}
		if fe := normalize(&spec, cmd.AtMs, false); fe != nil {
			return failField(c, http.StatusBadRequest, in.named(fe))
		}
		if field, msg := p.updateScopeError(&cur.SubSpec, &spec); msg != "" {
			return fail(c, http.StatusForbidden, field, msg)
		}
		if fe := s.checkPinned(&spec, &cur.SubSpec); fe != nil {
			return failField(c, http.StatusBadRequest, in.named(fe))
		}
		if spec.PostURL != cur.PostURL {
			if fe := s.guardPostURL(spec.PostURL); fe != nil {
				return failField(c, http.StatusBadRequest, fe)
			}
		}
		cmd.Spec = spec
		if spec.GeoSupport == geoNo {
			// A pinned subscription follows its preferred server (else the
			// node that created it): a changed pin moves it there.
			if home := fsm.PinnedHome(&spec, cur.Origin, cur.HomeNode); home != cur.HomeNode || home != cur.Owner {
				cmd.Home = home
			}
		}
		cmd.SecretOverlapUntilMs = s.overlapUntil(cmd.AtMs)
		res, err := s.b.Apply(c.Request().Context(), cmd)
		if err != nil {
			return s.applyErr(c, err)
		}
		switch {
		case errors.Is(res.Err, fsm.ErrConflict) && attempt < applyRetries:
			continue
		case errors.Is(res.Err, fsm.ErrConflict):
			return fail(c, http.StatusConflict, "", "the subscription kept changing; try again")
		case errors.Is(res.Err, fsm.ErrNotFound):
			return notFound(c)
		case res.Err != nil:
			return s.applyErr(c, res.Err)
		}
		return c.JSON(fl.updated(), fl.view(c, res.Sub, false))
	}
}

func (s *Server) deleteSub(c echo.Context) error { return s.remove(c, v1API) }

// remove deletes the subscription of the path: 204 on /v1; 202 on the
// NetSapiens paths, with {"code":202,"message":"Accepted","id":...}. A body
// is ignored.
func (s *Server) remove(c echo.Context, fl flavor) error {
	id := c.Param("id")
	if _, ok := s.lookup(c, id); !ok {
		return notFound(c)
	}
	res, err := s.b.Apply(c.Request().Context(), &fsm.DeleteSub{ID: id})
	if err != nil {
		return s.applyErr(c, err)
	}
	if errors.Is(res.Err, fsm.ErrNotFound) {
		return notFound(c)
	}
	if fl.ns {
		return c.JSON(http.StatusAccepted, map[string]any{"code": http.StatusAccepted, "message": "Accepted", "id": id})
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) pauseSub(paused bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Param("id")
		if _, ok := s.lookup(c, id); !ok {
			return notFound(c)
		}
		res, err := s.b.Apply(c.Request().Context(), &fsm.SetPaused{ID: id, Paused: paused, AtMs: s.cfg.Now().UnixMilli()})
		if err != nil {
			return s.applyErr(c, err)
		}
		if errors.Is(res.Err, fsm.ErrNotFound) {
			return notFound(c)
		}
		return c.JSON(http.StatusOK, viewOf(res.Sub))
	}
}
