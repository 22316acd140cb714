// Package client is the typed Go client of hookswitch's HTTP API, used by
// the command line and the tests. It speaks only HTTP; it holds no state
// beyond the address and the token.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/httpapi"
)

// DefaultTimeout bounds one API call.
const DefaultTimeout = 30 * time.Second

// Client calls one hookswitch node.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the node at addr ("http://127.0.0.1:7480"; a bare
// host:port gets http://) with the given API token.
func New(addr, token string) *Client {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return &Client{base: strings.TrimRight(addr, "/"), token: token, http: &http.Client{Timeout: DefaultTimeout}}
}

// TLSConfig is the TLS configuration of a client that trusts the CA in
// caFile (for a node whose certificate comes from a private CA, such as
// the cluster's: `hookswitch tls init`) instead of the system roots, and,
// when certFile and keyFile are set, presents that certificate (a node's,
// for `hookswitch join` on a cluster with mutual TLS). All empty: nil.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" && certFile == "" && keyFile == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", caFile)
		}
		c.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("--cert and --key go together")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// WithTLS makes the client use a TLS configuration (see TLSConfig); nil
// keeps the defaults.
func (c *Client) WithTLS(cfg *tls.Config) *Client {
	if cfg == nil {
		return c
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = cfg
	c.http = &http.Client{Timeout: c.http.Timeout, Transport: t}
	return c
}

// WithHTTPClient replaces the underlying http.Client (TLS settings, timeouts).
func (c *Client) WithHTTPClient(h *http.Client) *Client { c.http = h; return c }

// Error is an API error answer.
type Error struct {
	Status  int
	Message string `json:"error"`
	Field   string `json:"field"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%d %s: %s: %s", e.Status, http.StatusText(e.Status), Escape(e.Field), Escape(e.Message))
	}
	return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), Escape(e.Message))
}

// StatusOf returns the HTTP status of an API error, 0 for other errors.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Fields is a subscription request body: only the fields set are sent.
type Fields map[string]any

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

func subPath(id string, rest ...string) string {
	return "/v1/subscriptions/" + url.PathEscape(id) + strings.Join(rest, "")
}

// CreateSub creates a subscription; the answer carries its secret.
func (c *Client) CreateSub(ctx context.Context, f Fields) (httpapi.SubView, error) {
	var v httpapi.SubView
	err := c.Do(ctx, http.MethodPost, "/v1/subscriptions", f, &v)
	return v, err
}

// ListSubs lists subscriptions; query may hold model, domain and status.
func (c *Client) ListSubs(ctx context.Context, query url.Values) ([]httpapi.SubView, error) {
	path := "/v1/subscriptions"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	var v []httpapi.SubView
	err := c.Do(ctx, http.MethodGet, path, nil, &v)
	return v, err
}

// GetSub reads one subscription.
func (c *Client) GetSub(ctx context.Context, id string) (httpapi.SubView, error) {
	var v httpapi.SubView
	err := c.Do(ctx, http.MethodGet, subPath(id), nil, &v)
	return v, err
}

// UpdateSub changes a subscription: merge=true sends PATCH (only the given
// fields change), merge=false sends PUT (full replace).
func (c *Client) UpdateSub(ctx context.Context, id string, f Fields, merge bool) (httpapi.SubView, error) {
	method := http.MethodPut
	if merge {
		method = http.MethodPatch
	}
	var v httpapi.SubView
	err := c.Do(ctx, method, subPath(id), f, &v)
	return v, err
}

// DeleteSub deletes a subscription.
func (c *Client) DeleteSub(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, subPath(id), nil, nil)
}

// PauseSub pauses (pause=true) or resumes a subscription.
func (c *Client) PauseSub(ctx context.Context, id string, pause bool) (httpapi.SubView, error) {
	action := "/resume"
	if pause {
		action = "/pause"
	}
	var v httpapi.SubView
	err := c.Do(ctx, http.MethodPost, subPath(id, action), nil, &v)
	return v, err
}

// Secret reads a subscription's signing secret.
func (c *Client) Secret(ctx context.Context, id string) (string, error) {
	var v struct {
		Secret string `json:"secret"`
	}
	err := c.Do(ctx, http.MethodGet, subPath(id, "/secret"), nil, &v)
	return v.Secret, err
}

// RotateSecret rotates a subscription's signing secret (POST
// /v1/subscriptions/{id}/secret/rotate): to secret, or to a generated one
// when secret is "". For secret-overlap, POSTs carry both signatures.
func (c *Client) RotateSecret(ctx context.Context, id, secret string) (httpapi.RotateResponse, error) {
	var body any
	if secret != "" {
		body = map[string]string{"secret": secret}
	}
	var v httpapi.RotateResponse
	err := c.Do(ctx, http.MethodPost, subPath(id, "/secret/rotate"), body, &v)
	return v, err
}

// CreateToken creates an API token; the answer carries the token string.
func (c *Client) CreateToken(ctx context.Context, r httpapi.TokenRequest) (httpapi.TokenView, error) {
	var v httpapi.TokenView
	err := c.Do(ctx, http.MethodPost, "/v1/tokens", r, &v)
	return v, err
}

// ListTokens lists API tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]httpapi.TokenView, error) {
	var v []httpapi.TokenView
	err := c.Do(ctx, http.MethodGet, "/v1/tokens", nil, &v)
	return v, err
}

// RevokeToken deletes an API token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil)
}

// Cluster reads GET /v1/cluster.
func (c *Client) Cluster(ctx context.Context) (httpapi.ClusterView, error) {
	var v httpapi.ClusterView
	err := c.Do(ctx, http.MethodGet, "/v1/cluster", nil, &v)
	return v, err
}

// Ready calls /readyz and returns nil when the node is ready.
func (c *Client) Ready(ctx context.Context) error {
	return c.Do(ctx, http.MethodGet, "/readyz", nil, nil)
}

// TestSub sends one synthetic event to the subscription's post-url now and
// returns the receiver's answer.
func (c *Client) TestSub(ctx context.Context, id string) (httpapi.TestResult, error) {
	var v httpapi.TestResult
	err := c.Do(ctx, http.MethodPost, subPath(id, "/test"), nil, &v)
	return v, err
}

// ReplaySub rewinds a subscription to the first events at or after from.
func (c *Client) ReplaySub(ctx context.Context, id string, from time.Time) (httpapi.SubView, error) {
	var v httpapi.SubView
	err := c.Do(ctx, http.MethodPost, subPath(id, "/replay"), httpapi.ReplayRequest{From: from.UTC().Format(time.RFC3339)}, &v)
	return v, err
}

// IngestResult is the answer of POST /v1/events.
type IngestResult struct {
	Accepted int      `json:"accepted"`
	EventIDs []string `json:"event-ids"`
}

// Ingest posts events (a JSON object or array of objects) to POST /v1/events.
func (c *Client) Ingest(ctx context.Context, events any) (IngestResult, error) {
	var v IngestResult
	err := c.Do(ctx, http.MethodPost, "/v1/events", events, &v)
	return v, err
}

// Self reads the node's own join request (loopback callers only).
func (c *Client) Self(ctx context.Context) (httpapi.JoinRequest, error) {
	var v httpapi.JoinRequest
	err := c.Do(ctx, http.MethodGet, "/v1/cluster/self", nil, &v)
	return v, err
}

// Join asks this client's node (any member of a cluster) to add the node
// described by req. The client's token is the join token or a super token.
func (c *Client) Join(ctx context.Context, req httpapi.JoinRequest) error {
	return c.Do(ctx, http.MethodPost, "/v1/cluster/join", req, nil)
}

// Leave makes the client's node drain, leave the cluster and stop.
func (c *Client) Leave(ctx context.Context) error {
	return c.Do(ctx, http.MethodPost, "/v1/cluster/leave", nil, nil)
}

// Drain moves subscriptions off a node (drain=true) or allows them back.
func (c *Client) Drain(ctx context.Context, node string, drain bool) error {
	action := "/undrain"
	if drain {
		action = "/drain"
	}
	return c.Do(ctx, http.MethodPost, "/v1/cluster/nodes/"+url.PathEscape(node)+action, nil, nil)
}

// RemoveNode removes a node from the cluster.
func (c *Client) RemoveNode(ctx context.Context, node string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/cluster/nodes/"+url.PathEscape(node), nil, nil)
}

// Sources returns the PBX sources of the node the client talks to (GET
// /v1/cluster/self/sources: loopback callers or a super token).
func (c *Client) Sources(ctx context.Context) (source.View, error) {
	var v source.View
	err := c.Do(ctx, http.MethodGet, source.ViewPath, nil, &v)
	return v, err
}
