package integration

// Helpers of kamailio_test.go: Kamailio and SIPp child processes. They
// are not hookswitch processes (those start through integration/harness
// only); they run on loopback ports in their own process groups and are
// stopped when the test ends.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// kamailioCfg is the Kamailio config of the docs: the test runs exactly
// what operators are told to run.
const kamailioCfg = "../docs/kamailio.cfg"

// evapiModule is where Debian's kamailio-extra-modules puts evapi (a glob: the arch dir).
const evapiModule = "/usr/lib/*/kamailio/modules/evapi.so"

// Bounds of the helpers.
const (
	kamailioStartTimeout = 15 * time.Second
	sippTimeout          = 60 * time.Second
	connectTimeout       = 20 * time.Second
)

// needKamailio skips the test when Kamailio, its evapi module or SIPp is
// missing (scripts/test installs them: kamailio, kamailio-extra-modules,
// sip-tester).
func needKamailio(t *testing.T) {
	t.Helper()
	skipShort(t)
	for _, bin := range []string{"kamailio", "sipp"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (apt-get install kamailio kamailio-extra-modules sip-tester; scripts/test installs them)", bin)
		}
	}
	if m, _ := filepath.Glob(evapiModule); len(m) == 0 {
		t.Skip("Kamailio's evapi module is not installed (apt-get install kamailio-extra-modules; scripts/test installs it)")
	}
}

// proc is a child process in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func startProc(t *testing.T, name, dir string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout = lockedBuffer{p.mu, p.out}
	p.cmd.Stderr = lockedBuffer{p.mu, p.out}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("---- output of %s ----\n%s", name, tailString(p.output(), 40))
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after 10 s.
func (p *proc) stop(t *testing.T) {
	if !p.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// wait waits for the process to exit by itself and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not finish within %s:\n%s", p.name, timeout, tailString(p.output(), 40))
		return -1
	}
}

func tailString(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// kamailio is a Kamailio running docs/kamailio.cfg on loopback.
type kamailio struct {
	t         *testing.T
	dir       string
	SIPPort   int
	EvapiAddr string
	p         *proc
	starts    int
}

func newKamailio(t *testing.T) *kamailio {
	t.Helper()
	ports := harness.FreePorts(t, "127.0.0.1", 2)
	k := &kamailio{t: t, dir: t.TempDir(), SIPPort: ports[0], EvapiAddr: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	cfg, err := os.ReadFile(kamailioCfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.dir, "kamailio.cfg"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	k.start()
	return k
}

// start runs Kamailio and waits until evapi accepts connections. (It
// connects once and closes: that client receives nothing.)
func (k *kamailio) start() {
	k.t.Helper()
	k.starts++
	k.p = startProc(k.t, fmt.Sprintf("kamailio#%d", k.starts), k.dir, "kamailio",
		"-DD", "-E", "-f", filepath.Join(k.dir, "kamailio.cfg"), "-Y", k.dir, "-P", filepath.Join(k.dir, "kamailio.pid"), "-m", "64",
		"-A", fmt.Sprintf("SIP_LISTEN=udp:127.0.0.1:%d", k.SIPPort), "-A", fmt.Sprintf("EVAPI_BIND=%q", k.EvapiAddr))
	harness.WaitFor(k.t, func() (bool, string, string) {
		if !k.p.running() {
			k.t.Fatalf("kamailio exited during start:\n%s", tailString(k.p.output(), 40))
		}
		c, err := net.DialTimeout("tcp", k.EvapiAddr, time.Second)
		if err != nil {
			return false, "evapi to listen on " + k.EvapiAddr, err.Error()
		}
		c.Close()
		return true, "", ""
	}, kamailioStartTimeout)
}

func (k *kamailio) stop() { k.p.stop(k.t) }

// sippUAS starts a SIPp UAS on a free loopback port: scenario is "uas"
// (SIPp's own: answers every call) or a file of testdata/sipp.
func sippUAS(t *testing.T, scenario string) (port int) {
	t.Helper()
	ports := harness.FreePorts(t, "127.0.0.1", 2)
	args := []string{"-i", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-mp", fmt.Sprint(ports[1]), "-nostdin"}
	if scenario == "uas" {
		args = append(args, "-sn", "uas")
	} else {
		abs, _ := filepath.Abs(filepath.Join("testdata", "sipp", scenario))
		args = append(args, "-sf", abs)
	}
	p := startProc(t, "sipp "+scenario, t.TempDir(), "sipp", args...)
	// SIPp binds before it reads the scenario: wait until the UDP port is
	// taken.
	harness.WaitFor(t, func() (bool, string, string) {
		if !p.running() {
			t.Fatalf("sipp %s exited:\n%s", scenario, tailString(p.output(), 20))
		}
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
		if err == nil {
			c.Close()
			return false, "sipp to bind its port", "free"
		}
		return true, "", ""
	}, 10*time.Second)
	return ports[0]
}

// sippUAC places calls calls of scenario (testdata/sipp/uac_*.xml) to the
// UAS at uasPort through Kamailio, rate per second, and fails the test
// unless every call succeeded.
func sippUAC(t *testing.T, k *kamailio, scenario string, uasPort, calls int, rate int) {
	t.Helper()
	ports := harness.FreePorts(t, "127.0.0.1", 2)
	abs, _ := filepath.Abs(filepath.Join("testdata", "sipp", scenario))
	p := startProc(t, "sipp "+scenario, t.TempDir(), "sipp",
		"-sf", abs, "-s", "2002", fmt.Sprintf("127.0.0.1:%d", uasPort), "-rsa", fmt.Sprintf("127.0.0.1:%d", k.SIPPort),
		"-i", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-mp", fmt.Sprint(ports[1]),
		"-m", fmt.Sprint(calls), "-r", fmt.Sprint(rate), "-l", "200", "-nostdin",
		"-timeout", fmt.Sprintf("%ds", int(sippTimeout/time.Second)), "-timeout_error", "-recv_timeout", "10s")
	if code := p.wait(t, sippTimeout+10*time.Second); code != 0 {
		t.Fatalf("sipp %s: exit code %d (0: every call succeeded):\n%s", scenario, code, tailString(p.output(), 40))
	}
}

// sourceStatus returns the node's status of the source named name.
func sourceStatus(t *testing.T, nd *harness.Node, name string) (source.Status, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), harness.CallTimeout)
	defer cancel()
	v, err := nd.API().Sources(ctx)
	if err != nil {
		return source.Status{}, false
	}
	for _, s := range v.Sources {
		if s.Name == name {
			return s, true
		}
	}
	return source.Status{}, false
}

// waitSource waits until the source's status satisfies cond.
func waitSource(t *testing.T, nd *harness.Node, name, want string, cond func(source.Status) bool) source.Status {
	t.Helper()
	var last source.Status
	harness.WaitFor(t, func() (bool, string, string) {
		st, ok := sourceStatus(t, nd, name)
		last = st
		return ok && cond(st), want, fmt.Sprintf("%+v", st)
	}, connectTimeout)
	return last
}
