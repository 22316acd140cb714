package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Connection and request limits (DESIGN.md "Webhook delivery").
const (
	ConnectTimeout      = 5 * time.Second  // TCP connect
	TLSHandshakeTimeout = 5 * time.Second  // TLS handshake, after connect
	DefaultTimeout      = 15 * time.Second // whole request, unless Target.Timeout
	idleConnTimeout     = 90 * time.Second // keep-alive connections are closed after this idle time
	tcpKeepAlive        = 30 * time.Second
	// maxIdleConnsPerHost keeps a connection per subscription when many
	// subscriptions post to one receiver (a CRM), instead of reconnecting.
	maxIdleConnsPerHost = 1024

	snippetBytes  = 256      // of a response body kept in Result.BodySnippet
	drainMaxBytes = 64 << 10 // of a response body read so the connection can be reused
)

// Header names.
const (
	HeaderWebhookID        = "webhook-id"
	HeaderWebhookTimestamp = "webhook-timestamp"
	HeaderWebhookSignature = "webhook-signature"
	HeaderCorrelationID    = "X-Correlation-ID"
)

// Target is one webhook subscription as delivery needs it.
type Target struct {
	SubID    string
	URL      string // post-url: http or https
	Secret   string // whsec_<base64>
	Encoding string // json-array (default) | json | form
	BatchMax int    // events per POST for json-array; 0 = DefaultBatchMax
	Timeout  time.Duration
	// OldSecret, until OldSecretUntil, is the secret before the last
	// rotation: every POST carries its signature too (secret-overlap).
	OldSecret      string
	OldSecretUntil time.Time
}

// Result is the outcome of one POST attempt. Err is nil exactly when the
// receiver answered 2xx.
type Result struct {
	Status      int           // HTTP status, 0 when no response was received
	RetryAfter  time.Duration // from Retry-After on 429/502/503/504, clamped; 0 = use Backoff
	Gone        bool          // 410: suspend the subscription
	Err         error         // why the attempt failed; never contains the secret or the URL's query
	Duration    time.Duration // from sending to the end of reading the response
	BodySnippet string        // start of the response body, for last-error
}

// OK reports whether the attempt succeeded.
func (r Result) OK() bool { return r.Err == nil }

// Errors a Result can wrap besides transport errors and ErrRefused.
var (
	ErrStatus   = errors.New("receiver answered with a non-2xx status")
	ErrRedirect = errors.New("receiver answered with a redirect, which is not followed")
	ErrTimeout  = errors.New("request timed out")
	ErrBadURL   = errors.New("invalid post-url")
)

// NewClient returns the HTTP client webhook delivery uses: connect timeout
// ConnectTimeout, the post-url guard checked on every resolved address at
// connect time, no redirects followed (the 3xx response is returned), no
// proxy from the environment (the guard must see the real destination), and
// no overall timeout (Post bounds each request by Target.Timeout).
func NewClient(g *Guard) *http.Client {
	if g == nil {
		g = NewGuard(nil, nil)
	}
	dialer := &net.Dialer{Timeout: ConnectTimeout, KeepAlive: tcpKeepAlive, Control: g.Control}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         dialer.DialContext,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: TLSHandshakeTimeout,
			IdleConnTimeout:     idleConnTimeout,
			MaxIdleConnsPerHost: maxIdleConnsPerHost,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// PosterOptions configures a Poster. Zero values are the defaults.
type PosterOptions struct {
	Version string           // in User-Agent "hookswitch/<Version>"; "dev" when empty
	Guard   *Guard           // used to build the client when Client is nil; nil = defaults
	Client  *http.Client     // overrides NewClient(Guard), e.g. to add TLS roots
	Now     func() time.Time // clock for webhook-timestamp and Retry-After dates
	Logger  *slog.Logger
}

// Poster sends signed webhook POSTs. It is safe for concurrent use; one
// Poster (and so one connection pool) serves every subscription of a node.
type Poster struct {
	client    *http.Client
	userAgent string
	now       func() time.Time
	log       *slog.Logger
}

// NewPoster returns a Poster.
func NewPoster(o PosterOptions) *Poster {
	p := &Poster{client: o.Client, now: o.Now, log: o.Logger}
	if p.client == nil {
		p.client = NewClient(o.Guard)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("component", "webhook")
	v := o.Version
	if v == "" {
		v = "dev"
	}
	p.userAgent = "hookswitch/" + v
	return p
}

// Post makes one attempt to deliver body to t.URL, signed for msgID with this
// attempt's timestamp, within t.Timeout (DefaultTimeout when zero). It never
// follows redirects and reads at most a little of the response.
func (p *Poster) Post(ctx context.Context, t Target, msgID string, body []byte, contentType string) Result {
	u, err := parsePostURL(t.URL)
	if err != nil {
		return Result{Err: err}
	}
	safeURL := redact(u)
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	now := p.now()
	sig, err := SignAll(t.secrets(now), msgID, now, body)
	if err != nil {
		return Result{Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return Result{Err: fmt.Errorf("%w: %s", ErrBadURL, safeURL)}
	}
	h := req.Header
	h.Set("Content-Type", contentType)
	h.Set("User-Agent", p.userAgent)
	h.Set(HeaderCorrelationID, t.SubID)
	h.Set(HeaderWebhookID, msgID)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderWebhookSignature, sig)

	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return Result{Err: describeTransportError(ctx, err, safeURL, timeout), Duration: time.Since(start)}
	}
	snippet, readErr := readSnippet(resp.Body)
	_ = resp.Body.Close()
	r := Result{Status: resp.StatusCode, Duration: time.Since(start), BodySnippet: snippet}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if readErr != nil && ctx.Err() != nil {
			// The answer was 2xx; failing to read the rest of the body
			// before the deadline does not undo the delivery.
			p.log.Debug("response body not fully read", "sub", t.SubID, "url", safeURL, "err", readErr)
		}
		return r
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		r.Err = fmt.Errorf("%w: POST %s: %s", ErrRedirect, safeURL, resp.Status)
	case resp.StatusCode == http.StatusGone:
		r.Gone = true
		r.Err = fmt.Errorf("%w: POST %s: %s", ErrStatus, safeURL, resp.Status)
	default:
		r.Err = fmt.Errorf("%w: POST %s: %s", ErrStatus, safeURL, resp.Status)
	}
	if honoursRetryAfter(resp.StatusCode) {
		r.RetryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), p.now())
	}
	return r
}

func parsePostURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: does not parse", ErrBadURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: scheme must be http or https", ErrBadURL)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: no host", ErrBadURL)
	}
	return u, nil
}

// redact is the post-url without credentials, query or fragment, for logs and
// errors (a query often carries an auth key).
func redact(u *url.URL) string {
	return u.Scheme + "://" + u.Host + u.EscapedPath()
}

func describeTransportError(ctx context.Context, err error, safeURL string, timeout time.Duration) error {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: POST %s: no answer within %s", ErrTimeout, safeURL, timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its message holds the full URL; ours is redacted
	}
	return fmt.Errorf("POST %s: %w", safeURL, err)
}

func readSnippet(body io.Reader) (string, error) {
	buf := make([]byte, snippetBytes)
	n, err := io.ReadFull(body, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	} else if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(body, drainMaxBytes))
	}
	return sanitizeSnippet(buf[:n]), err
}

// sanitizeSnippet makes a response excerpt safe to store and show: valid
// UTF-8, control characters as spaces, trimmed.
func sanitizeSnippet(b []byte) string {
	// A read cut in the middle of a rune leaves U+FFFD at the end; fine.
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
	return strings.TrimSpace(s)
}
