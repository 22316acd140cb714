package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
)

// SnapshotTimeout bounds a snapshot download or upload (a large state
// takes longer than one ordinary call).
const SnapshotTimeout = 10 * time.Minute

// Snapshot opens GET /v1/snapshot (super token): the caller reads the
// snapshot file from the returned body and closes it.
func (c *Client) Snapshot(ctx context.Context) (io.ReadCloser, error) {
	resp, err := c.stream(ctx, http.MethodGet, "/v1/snapshot", nil, 0)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// RestoreSnapshot sends a snapshot file of size bytes (0: unknown) to POST
// /v1/snapshot/restore (super token): the cluster's subscriptions and API
// tokens are replaced by the file's.
func (c *Client) RestoreSnapshot(ctx context.Context, file io.Reader, size int64) (httpapi.RestoreResult, error) {
	var out httpapi.RestoreResult
	resp, err := c.stream(ctx, http.MethodPost, "/v1/snapshot/restore", file, size)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return out, fmt.Errorf("POST /v1/snapshot/restore: decode answer: %w", err)
	}
	return out, nil
}

// stream sends a request with a raw body and returns a 2xx response whose
// body the caller closes; an error answer becomes an *Error.
func (c *Client) stream(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", httpapi.SnapshotContentType)
		if size > 0 {
			req.ContentLength = size
		}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = SnapshotTimeout
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &Error{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(data))
		}
		return nil, e
	}
	return resp, nil
}
