package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// apiClient talks to the hookswitch admin API.
type apiClient struct {
	base  string // http://host:port
	token string
	http  *http.Client
}

// do sends a JSON request and returns the status and body.
func (a *apiClient) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// subSpec is the body of POST /v1/subscriptions.
type subSpec struct {
	ID       string `json:"id"`
	Model    string `json:"model"`
	PostURL  string `json:"post-url"`
	Domain   string `json:"domain"`
	BatchMax int    `json:"batch-max"`
}

// createSubs creates the subscriptions, parallel workers at a time. A
// freshly bootstrapped node may not have committed its root token when it
// first reports ready, so 401/503 are retried for a while.
func createSubs(ctx context.Context, a *apiClient, specs []subSpec, parallel int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	lastLog := time.Now()
	var logMu sync.Mutex
	for range max(1, parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(specs)) {
					return
				}
				if err := createSub(ctx, a, specs[i]); err != nil {
					cancel(err)
					return
				}
				d := done.Add(1)
				logMu.Lock()
				if time.Since(lastLog) > 2*time.Second {
					lastLog = time.Now()
					logf("created %d/%d subscriptions", d, len(specs))
				}
				logMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	logf("created %d subscriptions in %s", len(specs), time.Since(start).Round(time.Millisecond))
	return nil
}

func createSub(ctx context.Context, a *apiClient, s subSpec) error {
	deadline := time.Now().Add(15 * time.Second)
	for attempt := 0; ; attempt++ {
		status, body, err := a.do(ctx, http.MethodPost, "/v1/subscriptions", s)
		if err == nil && status == http.StatusCreated {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		retryable := err != nil || status == http.StatusUnauthorized || status == http.StatusServiceUnavailable ||
			status == http.StatusTooManyRequests || status >= 500
		if !retryable || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("create subscription %s: %w", s.ID, err)
			}
			return fmt.Errorf("create subscription %s: HTTP %d: %s", s.ID, status, truncate(strings.TrimSpace(string(body)), 300))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(min(time.Duration(attempt+1)*50*time.Millisecond, time.Second)):
		}
	}
}

// deleteSubs removes the subscriptions, best effort, within timeout.
func deleteSubs(a *apiClient, ids []string, parallel int, timeout time.Duration) (deleted int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var next, ok, failed atomic.Int64
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(1, parallel) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) {
					return
				}
				status, body, err := a.do(ctx, http.MethodDelete, "/v1/subscriptions/"+ids[i], nil)
				if err == nil && (status == http.StatusNoContent || status == http.StatusOK || status == http.StatusNotFound) {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				if err == nil {
					err = fmt.Errorf("HTTP %d: %s", status, truncate(strings.TrimSpace(string(body)), 200))
				}
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("delete subscription %s: %w", ids[i], err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return ok.Load(), fmt.Errorf("%d deletes failed; first: %w", failed.Load(), firstErr)
	}
	if n := ok.Load(); n < int64(len(ids)) {
		return n, fmt.Errorf("deleted only %d of %d subscriptions within %s", n, len(ids), timeout)
	}
	return ok.Load(), nil
}
