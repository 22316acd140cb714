package harness

import (
	"context"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestNetNSCut: inside a namespace, a cut between two addresses drops TCP
// connections between them both ways while other pairs still connect, and
// Heal restores them.
func TestNetNSCut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	ns := NewNetNS(t)
	hosts := []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"}
	addr := map[string]string{}
	for _, h := range hosts {
		ln, err := ns.Listen("tcp", h+":0")
		if err != nil {
			t.Fatalf("listen in %s: %v", ns.Name, err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		addr[h] = ln.Addr().String()
	}
	// The listener is in the namespace, not here.
	if c, err := net.DialTimeout("tcp", addr["127.0.0.12"], 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("dialled %s from outside the namespace", addr["127.0.0.12"])
	}
	connects := func(from, to string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		c, err := ns.DialFrom(ctx, from, "tcp", addr[to])
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	type pair struct{ from, to string }
	all := []pair{{"127.0.0.11", "127.0.0.12"}, {"127.0.0.12", "127.0.0.11"}, {"127.0.0.13", "127.0.0.12"}, {"127.0.0.11", "127.0.0.13"}}
	for _, p := range all {
		if !connects(p.from, p.to) {
			t.Fatalf("before the cut: %s cannot connect to %s", p.from, p.to)
		}
	}
	ns.Cut("127.0.0.11", "127.0.0.12")
	for _, p := range all {
		cut := (p.from == "127.0.0.11" && p.to == "127.0.0.12") || (p.from == "127.0.0.12" && p.to == "127.0.0.11")
		if got := connects(p.from, p.to); got == cut {
			t.Errorf("after cutting 127.0.0.11 from 127.0.0.12: %s → %s connects=%v, want %v", p.from, p.to, got, !cut)
		}
	}
	ns.Heal()
	for _, p := range all {
		if !connects(p.from, p.to) {
			t.Errorf("after heal: %s cannot connect to %s", p.from, p.to)
		}
	}
	// Random loss: with 100% nothing connects, and Heal removes it.
	ns.Loss(1)
	if connects("127.0.0.13", "127.0.0.11") {
		t.Errorf("with 100%% loss: connected")
	}
	ns.Heal()
	if !connects("127.0.0.13", "127.0.0.11") {
		t.Errorf("after heal of the loss: no connection")
	}
	if ns.HasNetem() {
		ns.Netem("delay", "20ms")
		start := time.Now()
		if !connects("127.0.0.13", "127.0.0.11") {
			t.Errorf("with netem delay: no connection")
		} else if d := time.Since(start); d < 20*time.Millisecond {
			t.Errorf("with netem delay 20ms each way, a connect took %s", d)
		}
		ns.ClearNetem()
	} else {
		t.Logf("this kernel has no netem qdisc: Netem not tested")
	}
	// An HTTP client of the namespace reaches a server in it.
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })}
	ln, err := ns.Listen("tcp", "127.0.0.13:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	resp, err := ns.HTTPClient().Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET through the namespace: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("GET through the namespace: %d", resp.StatusCode)
	}
}
