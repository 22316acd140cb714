package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source/synthetic"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/node"
)

// Defaults of the demo's flags.
const (
	DefaultRate     = synthetic.DefaultRate
	DefaultHTTPAddr = "127.0.0.1:0" // a free loopback port
	// MaxRate bounds --rate: one tick's events stay well inside one
	// ingest request's limit (10,000 events).
	MaxRate = 1000
	// SubscriptionID is the id of the demo's subscription.
	SubscriptionID = "demo"
)

// Bounds of the demo's own steps.
const (
	// startTimeout bounds the node's start until its root token is
	// accepted (election, registration, the token's commit).
	startTimeout = 30 * time.Second
	// callTimeout bounds one API call of the demo.
	callTimeout = 5 * time.Second
	// ingestTimeout bounds one POST of the made-up PBX.
	ingestTimeout = 5 * time.Second
	// liveEvery is the status line's refresh period on a terminal,
	// plainEvery on anything else (one line each).
	liveEvery  = 500 * time.Millisecond
	plainEvery = 2 * time.Second
	pollEvery  = 50 * time.Millisecond
	// drainTimeout bounds the wait for the last deliveries at the stop.
	drainTimeout = 3 * time.Second
)

// ErrOptions marks invalid demo options.
var ErrOptions = errors.New("demo: invalid options")

// Options are the demo's settings.
type Options struct {
	// Rate is synthetic calls per second.
	Rate float64
	// HTTPAddr is the node's HTTP listen address (loopback).
	HTTPAddr string
	// Duration stops the demo after this long; 0 runs until ctx is done.
	Duration time.Duration
	// Out gets the banner and the status line; Live redraws the status
	// line in place (a terminal) instead of printing one line per update.
	Out  io.Writer
	Live bool
	// Version is the binary's version (the node reports it).
	Version string
	// Config returns the node's configuration for a data dir and an HTTP
	// listen address: `agent --dev`'s (main.go).
	Config func(dataDir, httpAddr string) (node.Config, error)
	// Banner, when set, prints the dev node's banner once it runs.
	Banner func(w io.Writer, n *node.Node, cfg node.Config)
	// Logger gets the node's logs (default: errors only, to stderr, so
	// they do not bury the status line, which shows delivery errors).
	Logger *slog.Logger
	// TempDir is where the demo's temp dir is made (default os.TempDir).
	TempDir string
}

// Run runs the demo until ctx is done or Duration has passed, then stops
// everything gracefully and removes the temp dir. It returns nil after a
// clean stop.
func Run(ctx context.Context, o Options) (err error) {
	if o.Rate <= 0 || o.Rate > MaxRate {
		return fmt.Errorf("%w: --rate must be more than 0 and at most %d calls per second", ErrOptions, MaxRate)
	}
	if o.Duration < 0 {
		return fmt.Errorf("%w: --duration must not be negative", ErrOptions)
	}
	if o.Config == nil || o.Out == nil {
		return fmt.Errorf("%w: Config and Out are required", ErrOptions)
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = DefaultHTTPAddr
	}
	if !loopback(o.HTTPAddr) {
		return fmt.Errorf("%w: --http-addr %q: the demo listens on loopback only (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)", ErrOptions, o.HTTPAddr)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	tmp, err := os.MkdirTemp(o.TempDir, "hookswitch-demo-")
	if err != nil {
		return fmt.Errorf("demo: temp dir: %w", err)
	}
	fmt.Fprintf(o.Out, "hookswitch demo: temp dir %s (removed when the demo stops)\n", tmp)
	defer func() {
		if rmErr := os.RemoveAll(tmp); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("demo: remove temp dir: %w", rmErr))
			return
		}
		fmt.Fprintf(o.Out, "hookswitch demo: stopped; removed %s\n", tmp)
	}()

	// The receiver stops after the node (deferred before it), so the
	// node's last POSTs find it.
	rcv, err := StartReceiver()
	if err != nil {
		return fmt.Errorf("demo: receiver: %w", err)
	}
	defer rcv.Close()

	cfg, err := o.Config(filepath.Join(tmp, "data"), o.HTTPAddr)
	if err != nil {
		return err
	}
	n, err := node.Start(cfg, o.Version, log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if sErr := n.Shutdown(sctx); sErr != nil {
			err = errors.Join(err, fmt.Errorf("demo: node shutdown: %w", sErr))
		}
	}()
	if o.Banner != nil {
		o.Banner(o.Out, n, cfg)
	}

	base := "http://" + n.HTTPAddr()
	api := client.New(base, n.RootToken)
	sub, err := subscribe(ctx, api, rcv.URL())
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	if err := rcv.SetSecret(sub.Secret); err != nil {
		return fmt.Errorf("demo: subscription secret: %w", err)
	}
	fmt.Fprintf(o.Out, "hookswitch demo: receiver %s verifies subscription %q (model *); synthetic PBX: %g calls/s into %s/v1/events\n",
		rcv.URL(), sub.ID, o.Rate, base)
	fmt.Fprintln(o.Out, "hookswitch demo: Ctrl-C stops it")

	pbx := synthetic.New(synthetic.Options{Rate: o.Rate})
	ingest := client.New(base, "") // loopback ingests without a token
	pctx, stopPBX := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pbx.Run(pctx, func(ctx context.Context, evs []synthetic.Event) error {
			cctx, cancel := context.WithTimeout(ctx, ingestTimeout)
			defer cancel()
			_, err := ingest.Ingest(cctx, evs)
			return err
		})
	}()
	defer func() { stopPBX(); wg.Wait() }()

	st := &status{out: o.Out, live: o.Live, start: time.Now(), cols: termWidth(o.Out)}
	every := plainEvery
	if o.Live {
		every = liveEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopPBX()
			wg.Wait()
			drain(pbx, rcv)
			st.show(api, pbx, rcv, true)
			return nil
		case <-tick.C:
			st.show(api, pbx, rcv, false)
		}
	}
}

// subscribe creates the demo's subscription once the node accepts its
// root token (the leader loop commits it moments after the start).
func subscribe(ctx context.Context, api *client.Client, postURL string) (httpapi.SubView, error) {
	deadline := time.Now().Add(startTimeout)
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		sub, err := api.CreateSub(cctx, client.Fields{
			"id": SubscriptionID, "model": "*", "post-url": postURL,
		})
		cancel()
		if err == nil {
			return sub, nil
		}
		last = err
		if s := client.StatusOf(err); s >= 400 && s < 500 && s != 401 && s != 403 {
			return sub, fmt.Errorf("demo: create subscription: %w", err)
		}
		if time.Now().After(deadline) {
			return sub, fmt.Errorf("demo: the node did not accept a subscription within %s: %w", startTimeout, last)
		}
		select {
		case <-ctx.Done():
			return sub, ctx.Err()
		case <-time.After(pollEvery):
		}
	}
}

// drain waits a little for the receiver to get what was ingested (the
// subscription takes every model), so the last line adds up.
func drain(pbx *synthetic.PBX, rcv *Receiver) {
	deadline := time.Now().Add(drainTimeout)
	for rcv.Stats().Events < pbx.Stats().Events && time.Now().Before(deadline) {
		time.Sleep(pollEvery) // polling with a deadline
	}
}

// status draws the status line.
type status struct {
	out   io.Writer
	live  bool
	start time.Time
	width int // of the last live line, to blank what a shorter one leaves
	cols  int // the terminal's width (0: unknown)
}

// show prints the line; final ends a live line with a newline.
func (s *status) show(api *client.Client, pbx *synthetic.PBX, rcv *Receiver, final bool) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	sub, err := api.GetSub(ctx, SubscriptionID)
	line := Line(time.Since(s.start), pbx.Stats(), rcv.Stats(), sub, err)
	switch {
	case s.live:
		if s.cols > 1 && len(line) >= s.cols {
			line = line[:s.cols-1] // a wrapped line cannot be redrawn
		}
		pad := ""
		if d := s.width - len(line); d > 0 {
			pad = strings.Repeat(" ", d)
		}
		s.width = len(line)
		fmt.Fprintf(s.out, "\r%s%s", line, pad)
		if final {
			fmt.Fprintln(s.out)
		}
	default:
		fmt.Fprintln(s.out, line)
	}
}

// Line is one status line, the most telling first (a narrow terminal
// cuts the end): what the receiver verified, the subscription's lag and
// counters as the node reports them, then the PBX's traffic.
func Line(up time.Duration, p synthetic.Stats, r ReceiverStats, sub httpapi.SubView, subErr error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s delivered %d in %d POSTs, %d bad signatures", up.Truncate(time.Second), r.Events, r.Posts, r.BadSig)
	if r.BadBody > 0 {
		fmt.Fprintf(&b, ", %d bad bodies", r.BadBody)
	}
	if subErr != nil {
		fmt.Fprintf(&b, " | sub: %v", subErr)
	} else {
		fmt.Fprintf(&b, ", lag %d | sub %s posts %d errors %d", sub.Lag, sub.Status, sub.PostsCount, sub.ErrorCount)
	}
	fmt.Fprintf(&b, " | calls %d (%d live) ingested %d", p.Calls, p.Live, p.Events)
	if p.EmitErrors > 0 {
		fmt.Fprintf(&b, " (%d failed)", p.EmitErrors)
	}
	return b.String()
}

// loopback reports whether addr is host:port with a loopback host.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// IsTerminal reports whether w is a terminal (a character device), where
// the status line is redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
