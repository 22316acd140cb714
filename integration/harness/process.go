package harness

import (
	"path/filepath"
	"strings"
)

// StartProcess starts the binary with exactly args in CleanEnv plus env
// (in a new temporary working dir, its own process group, killed if the
// test process dies) and returns at once: for a long-running command that
// is not a node of the harness's making, such as `hookswitch demo`. The
// result is a Node without an API or a data dir: use Stdout, Stderr,
// Signal, Done, Wait, ExitState and Stop. A process still running at the
// end of the test is stopped with SIGTERM and must exit 0; its output is
// printed if the test failed.
func StartProcess(t TB, env []string, args ...string) *Node {
	t.Helper()
	Binary(t)
	dir := t.TempDir()
	nd := &Node{
		t: t, dir: dir,
		ID:     "hookswitch " + strings.Join(args, " "),
		args:   append([]string(nil), args...),
		env:    append([]string(nil), env...),
		stdout: filepath.Join(dir, "process.stdout"),
		stderr: filepath.Join(dir, "process.stderr"),
	}
	t.Cleanup(func() {
		if t.Failed() {
			nd.dumpOutput()
		}
	})
	t.Cleanup(func() { nd.thaw(); nd.cleanup() })
	nd.Launch()
	return nd
}
