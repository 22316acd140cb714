package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// NetNS is a network namespace the test made itself (`ip netns add`), with
// its loopback up: nodes listen on 127.0.0.x addresses inside it, and
// iptables rules and tc qdiscs inside it touch nothing outside. Creating
// one needs root and the ip, iptables and tc commands (scripts/test
// installs them).
type NetNS struct {
	Name string
	t    TB
}

// ErrNetNS is wrapped by the errors of namespace operations.
var ErrNetNS = errors.New("netns")

// NewNetNS creates a namespace "hs-<random>" with lo up, removed when the
// test ends. It fails the test (it does not skip) when not root or when
// ip is missing.
func NewNetNS(t TB) *NetNS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("harness: network namespaces need root (euid %d); run the fault tests as root (CI does)", os.Geteuid())
	}
	for _, tool := range []string{"ip", "iptables", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("harness: %s not found (%v); scripts/test installs iproute2 and iptables", tool, err)
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := &NetNS{Name: "hs-" + hex.EncodeToString(b), t: t}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("harness: ip netns add %s: %v: %s", ns.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			errorf(t, "harness: ip netns del %s: %v: %s", ns.Name, err, out)
		}
	})
	if out, err := ns.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("harness: ip link set lo up in %s: %v: %s", ns.Name, err, out)
	}
	return ns
}

// Command returns a command that runs inside the namespace (through `ip
// netns exec`, which execs it: the process's pid is the command's).
func (ns *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// run runs a command inside the namespace and returns its combined output
// in the error.
func (ns *NetNS) run(name string, args ...string) error {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w %s: %s %s: %v: %s", ErrNetNS, ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// do runs f on an OS thread switched into the namespace, then switches the
// thread back. Sockets f creates stay in the namespace. If the thread
// cannot be switched back it stays locked, so the runtime ends it.
func (ns *NetNS) do(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: own namespace: %v", ErrNetNS, err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: %v", ErrNetNS, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%w: setns %s: %v", ErrNetNS, ns.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the namespace: keep it locked so that it
		// exits with this goroutine instead of running others.
		return errors.Join(ferr, fmt.Errorf("%w: setns back: %v", ErrNetNS, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Listen listens on addr inside the namespace.
func (ns *NetNS) Listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.do(func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// DialContext dials addr from inside the namespace.
func (ns *NetNS) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return ns.DialFrom(ctx, "", network, addr)
}

// DialFrom dials addr from inside the namespace with the local IP local
// ("" = chosen by the kernel).
func (ns *NetNS) DialFrom(ctx context.Context, local, network, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	var c net.Conn
	err := ns.do(func() (err error) {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient is an HTTP client whose connections are made inside the
// namespace (30s timeout, like the API client's default).
func (ns *NetNS) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = ns.DialContext
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// IPTables runs iptables inside the namespace.
func (ns *NetNS) IPTables(args ...string) error {
	return ns.run("iptables", append([]string{"-w"}, args...)...)
}

// Cut drops every packet between the IPs a and b, both ways, inside the
// namespace (until Heal). It fails the test if a rule cannot be added.
func (ns *NetNS) Cut(a, b string) {
	ns.t.Helper()
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		for _, p := range [][2]string{{a, b}, {b, a}} {
			if err := ns.IPTables("-I", chain, "-s", p[0], "-d", p[1], "-j", "DROP"); err != nil {
				ns.t.Fatalf("harness: cut %s from %s: %v", a, b, err)
			}
		}
	}
}

// Heal removes every cut (flushes INPUT and OUTPUT inside the namespace).
func (ns *NetNS) Heal() {
	ns.t.Helper()
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if err := ns.IPTables("-F", chain); err != nil {
			ns.t.Fatalf("harness: heal: %v", err)
		}
	}
}

// Loss drops each packet on the namespace's loopback with probability p
// (0..1) with an iptables statistic rule (the kernel may lack netem), until
// Heal.
func (ns *NetNS) Loss(p float64) {
	ns.t.Helper()
	prob := strconv.FormatFloat(p, 'f', 4, 64)
	if err := ns.IPTables("-I", "INPUT", "-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"); err != nil {
		ns.t.Fatalf("harness: loss %s: %v", prob, err)
	}
}

// Netem puts a netem qdisc on the namespace's loopback, e.g. Netem("loss",
// "30%") or Netem("delay", "50ms", "10ms"); a second call replaces it.
func (ns *NetNS) Netem(args ...string) {
	ns.t.Helper()
	if err := ns.run("tc", append([]string{"qdisc", "replace", "dev", "lo", "root", "netem"}, args...)...); err != nil {
		ns.t.Fatalf("harness: netem: %v", err)
	}
}

// HasNetem reports whether the kernel has the netem qdisc (some sandbox
// kernels do not; Loss works without it).
func (ns *NetNS) HasNetem() bool {
	if err := ns.run("tc", "qdisc", "replace", "dev", "lo", "root", "netem", "delay", "0ms"); err != nil {
		return false
	}
	ns.ClearNetem()
	return true
}

// ClearNetem removes the netem qdisc from the namespace's loopback (no
// error when there is none).
func (ns *NetNS) ClearNetem() {
	_ = ns.run("tc", "qdisc", "del", "dev", "lo", "root")
}
