package ami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
)

// Kind is the source kind (the URL scheme).
const Kind = "ami"

// Timeouts of a session.
const (
	// DialTimeout bounds one connection attempt.
	DialTimeout = 5 * time.Second
	// LoginTimeout bounds the banner and the login's answer.
	LoginTimeout = 10 * time.Second
	keepAlive    = 15 * time.Second
)

// ErrLogin is the error of a login Asterisk refused.
var ErrLogin = errors.New("ami: login refused")

// ErrNotAMI is the error of a server whose banner is not AMI's.
var ErrNotAMI = errors.New("ami: the server is not the Asterisk Manager Interface")

// Options configures New.
type Options struct {
	Addr     string // HOST:PORT; required
	Username string
	Secret   string          // never logged
	Mapping  Mapping         // scope defaults
	Log      source.Appender // required
	Logger   *slog.Logger    // component=source-ami is added; default slog.Default()
	Backoff  source.Backoff  // reconnect waits; zero: the defaults
	Queue    int             // events queued for the log; 0: source.DefaultQueue
}

// Client is a running AMI source.
type Client struct {
	opts    Options
	log     *slog.Logger
	state   *source.State
	sink    *source.Sink
	backoff source.Backoff

	// lastFail is the last error logged (Run's goroutine only).
	lastFail string
}

// New returns a client of the AMI at opts.Addr. Run starts it.
func New(opts Options) *Client {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	name := Kind + "://" + opts.Username + "@" + opts.Addr
	if opts.Username == "" {
		name = Kind + "://" + opts.Addr
	}
	logger = logger.With("component", "source-ami", "source", name)
	state := source.NewState(Kind, name)
	return &Client{opts: opts, log: logger, state: state, backoff: opts.Backoff,
		sink: source.NewSink(opts.Log, state, opts.Queue, logger)}
}

// Status implements source.Source.
func (c *Client) Status() source.Status { return c.state.Snapshot() }

// Run logs in and reads until ctx is done, reconnecting with backoff.
// The events still queued when ctx is done are appended before it returns.
func (c *Client) Run(ctx context.Context) {
	source.RunClient(ctx, &net.Dialer{Timeout: DialTimeout, KeepAlive: keepAlive}, c.opts.Addr, c.sink, &c.backoff,
		func(err error) { c.fail("connecting failed", err) }, c.session)
}

// session logs in on one connection and reads events until it fails. It
// reports whether the login succeeded.
func (c *Client) session(ctx context.Context, conn net.Conn) (good bool) {
	defer c.state.Connected(false)
	r := NewReader(conn)
	r.OnGarbage = func(err error) { c.fail("garbage from AMI skipped", err) }
	if err := c.login(conn, r); err != nil {
		if ctx.Err() == nil {
			c.fail("AMI login failed", err)
		}
		return false
	}
	c.state.Connected(true)
	c.log.Info("logged in to AMI")
	c.lastFail = ""
	for {
		m, err := r.Next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, io.EOF):
				c.fail("Asterisk closed the AMI connection", err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				c.fail("the AMI connection ended inside a message (truncated)", err)
			default:
				c.fail("reading AMI failed; reconnecting", err)
			}
			return true
		}
		if m.Get("Event") == "" {
			continue // a response to an action
		}
		c.state.Read(1)
		if ev := c.opts.Mapping.Map(m); ev != nil {
			c.sink.Offer(ev)
		}
	}
}

// login reads the banner and logs in. Events that arrive before the
// login's answer (there are none before a login) are skipped.
func (c *Client) login(conn net.Conn, r *Reader) error {
	_ = conn.SetDeadline(time.Now().Add(LoginTimeout))
	defer func() { _ = conn.SetDeadline(time.Time{}) }()
	banner, err := r.Banner()
	if err != nil {
		return fmt.Errorf("reading the banner: %w", err)
	}
	if !strings.Contains(banner, "Call Manager") {
		return ErrNotAMI
	}
	const actionID = "hookswitch-login"
	msg := "Action: Login\r\nUsername: " + clean(c.opts.Username) + "\r\nSecret: " + clean(c.opts.Secret) +
		"\r\nEvents: on\r\nActionID: " + actionID + "\r\n\r\n"
	if _, err := io.WriteString(conn, msg); err != nil {
		return fmt.Errorf("sending the login: %w", err)
	}
	for range MaxLines {
		m, err := r.Next()
		if err != nil {
			return fmt.Errorf("reading the login's answer: %w", err)
		}
		resp := m.Get("Response")
		if resp == "" || (m.Get("ActionID") != "" && m.Get("ActionID") != actionID) {
			continue
		}
		if strings.EqualFold(resp, "Success") {
			return nil
		}
		// The message is Asterisk's ("Authentication failed"): no secret.
		return fmt.Errorf("%w: %s", ErrLogin, m.Get("Message"))
	}
	return fmt.Errorf("%w: no answer to the login", ErrLogin)
}

// clean drops CR and LF, which would end the line (an injected action).
func clean(s string) string { return strings.NewReplacer("\r", "", "\n", "").Replace(s) }

// fail counts and logs an error. The same error again (a PBX that stays
// down) is logged at debug level until a connection works again.
func (c *Client) fail(msg string, err error) {
	text := fmt.Sprintf("%s: %v", msg, err)
	c.state.Fail(text)
	if text == c.lastFail {
		c.log.Debug(msg, "err", err)
		return
	}
	c.lastFail = text
	c.log.Warn(msg, "err", err)
}
