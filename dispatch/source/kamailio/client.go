package kamailio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
)

// Kind is the source kind (the URL scheme).
const Kind = "kamailio"

// DialTimeout bounds one connection attempt.
const DialTimeout = 5 * time.Second

// stableConn is how long a connection must last to count as working
// even without events.
const stableConn = time.Second

// keepAlive is the TCP keepalive period: evapi sends nothing while no
// call happens, so a dead peer is found by the kernel.
const keepAlive = 15 * time.Second

// Options configures New.
type Options struct {
	Addr    string          // HOST:PORT of evapi's bind_addr; required
	Log     source.Appender // required
	Logger  *slog.Logger    // component=source-kamailio is added; default slog.Default()
	Backoff source.Backoff  // reconnect waits; zero: the defaults
	Queue   int             // events queued for the log; 0: source.DefaultQueue
}

// Client is a running Kamailio source.
type Client struct {
	addr    string
	log     *slog.Logger
	state   *source.State
	sink    *source.Sink
	backoff source.Backoff

	// lastFail is the last error logged (Run's goroutine only).
	lastFail string
}

// New returns a client of the evapi server at opts.Addr. Run starts it.
func New(opts Options) *Client {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	name := Kind + "://" + opts.Addr
	logger = logger.With("component", "source-kamailio", "source", name)
	state := source.NewState(Kind, name)
	return &Client{
		addr: opts.Addr, log: logger, state: state, backoff: opts.Backoff,
		sink: source.NewSink(opts.Log, state, opts.Queue, logger),
	}
}

// Status implements source.Source.
func (c *Client) Status() source.Status { return c.state.Snapshot() }

// Run connects and reads until ctx is done, reconnecting with backoff. The
// events still queued when ctx is done are appended before it returns.
func (c *Client) Run(ctx context.Context) {
	source.RunClient(ctx, &net.Dialer{Timeout: DialTimeout, KeepAlive: keepAlive}, c.addr, c.sink, &c.backoff,
		func(err error) { c.fail("connecting failed", err) }, c.session)
}

// session reads one connection until it fails. It reports whether the
// connection worked (carried an event, or lasted stableConn): the backoff
// then starts over, so that a Kamailio restart after a long quiet
// connection is caught at once.
func (c *Client) session(ctx context.Context, conn net.Conn) (good bool) {
	c.state.Connected(true)
	c.log.Info("connected to Kamailio evapi")
	c.lastFail = ""
	since := time.Now()
	defer func() {
		good = good || time.Since(since) >= stableConn
		c.state.Connected(false)
	}()
	r := NewReader(conn)
	r.OnGarbage = func(err error) {
		c.fail("garbage on the evapi socket; resynchronising", err)
	}
	for {
		payload, err := r.Next()
		if err != nil {
			switch {
			case ctx.Err() != nil:
			case errors.Is(err, io.EOF):
				c.fail("Kamailio closed the evapi connection", err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				c.fail("the evapi connection ended inside a netstring (truncated)", err)
			default:
				c.fail("reading evapi failed; reconnecting", err)
			}
			return good
		}
		c.state.Read(1)
		good = true
		evs, err := Map(payload)
		if err != nil {
			c.fail("skipped an evapi message", err)
			continue
		}
		for _, ev := range evs {
			c.sink.Offer(ev)
		}
	}
}

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
