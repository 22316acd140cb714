package httpapi

import (
	"errors"
	"io"
	"net/http"

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

// lookup returns a copy of the subscription if the caller may see it.
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
	return sub, true
}

func notFound(c echo.Context) error {
	return fail(c, http.StatusNotFound, "id", "no such subscription")
}

func (s *Server) createSub(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	in, fe := parseSubInput(body)
	if fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	for f := range in.raw {
		if readOnlyFields[f] {
			return fail(c, http.StatusBadRequest, f, "is read-only")
		}
	}
	p := principal(c)
	now := s.cfg.Now().UnixMilli()
	sub := &fsm.Subscription{CreatedMs: now, UpdatedMs: now, StartMs: now - creationSkewMs, HomeNode: s.b.NodeID(), Status: fsm.StatusPending}
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
		return failField(c, http.StatusBadRequest, fe)
	}
	if fe := normalize(&sub.SubSpec, now, true); fe != nil {
		return failField(c, http.StatusBadRequest, fe)
	}
	if field, msg := p.scopeError(&sub.SubSpec); msg != "" {
		return fail(c, http.StatusForbidden, field, msg)
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
	res, err := s.b.Apply(c.Request().Context(), &fsm.CreateSub{Sub: *sub})
	if err != nil {
		return s.applyErr(c, err)
	}
	if errors.Is(res.Err, fsm.ErrExists) {
		// A create retried after a lost answer (leadership moved) may find
		// its own first attempt committed: that is a success.
		if cur, ok := s.lookup(c, sub.ID); ok && cur.Secret == sub.Secret && cur.CreatedMs == sub.CreatedMs && cur.HomeNode == sub.HomeNode {
			v := viewOf(cur)
			v.Secret = cur.Secret
			return c.JSON(http.StatusCreated, v)
		}
		return fail(c, http.StatusConflict, "id", "a subscription with this id exists")
	}
	if res.Err != nil {
		return s.applyErr(c, res.Err)
	}
	v := viewOf(res.Sub)
	v.Secret = res.Sub.Secret
	return c.JSON(http.StatusCreated, v)
}

func (s *Server) listSubs(c echo.Context) error {
	q := c.QueryParams()
	p := principal(c)
	out := []SubView{}
	s.b.Read(func(st *fsm.State) {
		for _, sub := range st.SortedSubs() {
			if !p.canSee(&sub.SubSpec) {
				continue
			}
			v := viewOf(sub)
			if m := q.Get("model"); m != "" && v.Model != m {
				continue
			}
			if d := q.Get("domain"); d != "" && v.Domain != d {
				continue
			}
			if st := q.Get("status"); st != "" && v.Status != st {
				continue
			}
			out = append(out, v)
		}
	})
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getSub(c echo.Context) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	return c.JSON(http.StatusOK, viewOf(sub))
}

func (s *Server) getSecret(c echo.Context) error {
	sub, ok := s.lookup(c, c.Param("id"))
	if !ok {
		return notFound(c)
	}
	return c.JSON(http.StatusOK, map[string]string{"secret": sub.Secret})
}

func (s *Server) putSub(c echo.Context) error   { return s.updateSub(c, false) }
func (s *Server) patchSub(c echo.Context) error { return s.updateSub(c, true) }

// updateSub serves PUT (merge=false: every writable field is replaced, an
// absent one takes its default; an absent secret is kept) and PATCH
// (merge=true: only the fields given change). Read-only fields may be sent
// back as GET returned them and are ignored, except that posts-count and
// error-count may be set to 0 to reset them.
func (s *Server) updateSub(c echo.Context, merge bool) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	in, fe := parseSubInput(body)
	if fe != nil {
		return failField(c, http.StatusBadRequest, fe)
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
			return failField(c, http.StatusBadRequest, fe)
		}
		if spec.Secret == "" {
			spec.Secret = cur.Secret
		}
		if fe := normalize(&spec, cmd.AtMs, false); fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
		if field, msg := p.updateScopeError(&cur.SubSpec, &spec); msg != "" {
			return fail(c, http.StatusForbidden, field, msg)
		}
		cmd.Spec = spec
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
		return c.JSON(http.StatusOK, viewOf(res.Sub))
	}
}

func (s *Server) deleteSub(c echo.Context) error {
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
