package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
)

// guardPostURL refuses a post-url whose host is a literal address the
// post-url guard denies, in any spelling (webhook.Guard.CheckHost); a
// name is checked at connect time, on every address it resolves to.
func (s *Server) guardPostURL(postURL string) *fieldError {
	u, err := url.Parse(postURL)
	if err != nil {
		return badField("post-url", "is not a URL")
	}
	var re *webhook.RefusedError
	if err := s.cfg.PostURLGuard.CheckHost(u.Hostname()); errors.As(err, &re) {
		why := "post-url-deny"
		if re.Default {
			why = "link-local and cloud metadata addresses are refused by default; post-url-allow can permit a range"
		}
		return badField("post-url", "its host is the address %s, in the denied range %s (%s)", re.Addr, re.Rule, why)
	}
	return nil
}

// overlapUntil is when a rotation made at atMs stops sending the old
// secret's signature (0: at once).
func (s *Server) overlapUntil(atMs int64) int64 {
	if s.cfg.SecretOverlap <= 0 {
		return 0
	}
	return atMs + s.cfg.SecretOverlap.Milliseconds()
}

// tooManySubs answers a create refused by max-subs-per-token: 403, since
// retrying later does not help (429 would invite a retry loop).
func (s *Server) tooManySubs(c echo.Context) error {
	return fail(c, http.StatusForbidden, "", fmt.Sprintf(
		"this token has created %d subscriptions, the most max-subs-per-token allows: delete one, or ask the operator to raise the limit",
		s.cfg.MaxSubsPerToken))
}

// RotateResponse is the answer to POST /v1/subscriptions/{id}/secret/rotate.
type RotateResponse struct {
	Secret string `json:"secret"`
	// PreviousValidUntil is when POSTs stop carrying the previous secret's
	// signature (RFC 3339); absent when secret-overlap is 0.
	PreviousValidUntil string `json:"previous-secret-valid-until,omitempty"`
}

// rotateSecret serves POST /v1/subscriptions/{id}/secret/rotate: the body
// is empty or {"secret":"whsec_..."}; without a secret one is generated.
// The old secret keeps signing (beside the new one) for secret-overlap.
func (s *Server) rotateSecret(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var secret string
	if len(bytes.TrimSpace(body)) > 0 {
		in, fe := parseRawInput(body)
		if fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
		for k := range in.raw {
			if k != "secret" {
				return fail(c, http.StatusBadRequest, k, `unknown field (the body is {"secret":"whsec_..."}, or empty)`)
			}
		}
		var spec fsm.SubSpec
		if fe := in.mergeInto(&spec); fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
		if fe := checkSecret(spec.Secret); spec.Secret != "" && fe != nil {
			return failField(c, http.StatusBadRequest, fe)
		}
		secret = spec.Secret
	}
	if secret == "" {
		secret = NewSecret()
	}
	id := c.Param("id")
	for attempt := 0; ; attempt++ {
		cur, ok := s.lookup(c, id)
		if !ok {
			return notFound(c)
		}
		if secret == cur.Secret {
			return fail(c, http.StatusBadRequest, "secret", "is the current secret")
		}
		spec := cur.SubSpec
		spec.Secret = secret
		now := s.cfg.Now().UnixMilli()
		cmd := &fsm.UpdateSub{ID: id, Spec: spec, ExpectVersion: cur.Version, AtMs: now, SecretOverlapUntilMs: s.overlapUntil(now)}
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
		out := RotateResponse{Secret: res.Sub.Secret}
		if res.Sub.PrevSecret != "" && res.Sub.PrevSecretUntilMs > now {
			out.PreviousValidUntil = time.UnixMilli(res.Sub.PrevSecretUntilMs).UTC().Format(time.RFC3339)
		}
		return c.JSON(http.StatusOK, out)
	}
}
