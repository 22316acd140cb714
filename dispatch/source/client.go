package source

import (
	"context"
	"net"
	"sync"
)

// Session is one connection of a PBX client: it reads conn until the
// connection fails or ctx is done, and reports whether the connection
// worked (the backoff then starts over).
type Session func(ctx context.Context, conn net.Conn) (good bool)

// RunClient is the loop every PBX client runs until ctx is done: the sink's
// appender in its own goroutine, and sessions one after another, each on a
// new connection dialed with d to addr, with backoff between them. The
// connection in use is closed when ctx ends, so a blocked read returns.
// onDialErr is told of a failed dial (not of one ctx cancelled). Events
// still queued when ctx is done are appended before it returns.
func RunClient(ctx context.Context, d *net.Dialer, addr string, sink *Sink, backoff *Backoff, onDialErr func(error), session Session) {
	sinkCtx, stopSink := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sink.Run(sinkCtx) }()
	defer func() { stopSink(); wg.Wait() }()

	var mu sync.Mutex
	var cur net.Conn
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if cur != nil {
			_ = cur.Close()
		}
	})
	defer stop()
	for ctx.Err() == nil {
		good := false
		conn, err := d.DialContext(ctx, "tcp", addr)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				onDialErr(err)
			}
		default:
			mu.Lock()
			live := ctx.Err() == nil
			if live {
				cur = conn
			}
			mu.Unlock()
			if live {
				good = session(ctx, conn)
			}
			mu.Lock()
			cur = nil
			mu.Unlock()
			_ = conn.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if good {
			backoff.Reset()
		}
		if !backoff.Wait(ctx) {
			return
		}
	}
}
