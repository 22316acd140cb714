package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
)

// ModulePath is hookswitch's Go module; Binary builds the main package at
// its root.
const ModulePath = "github.com/hookswitch/hookswitch"

var build struct {
	once sync.Once
	dir  string // temp dir of the binary
	bin  string
	err  error
}

// Binary builds cmd hookswitch once per process (with -race when this
// program was built with -race, so a data race in a node makes it exit
// non-zero) and returns the binary's path. The build runs in the
// repository that contains the working directory. A failed build fails t
// (and every later call).
func Binary(t TB) string {
	t.Helper()
	build.once.Do(func() { build.bin, build.err = buildBinary() })
	if build.err != nil {
		t.Fatalf("harness: %v", build.err)
	}
	return build.bin
}

// UseBinary makes Binary return path (a binary built elsewhere, e.g. a
// benchmark's -bin flag) instead of building one. Call it before the
// first Binary.
func UseBinary(path string) {
	build.once.Do(func() { build.bin = path })
}

// RemoveBinary removes the binary Binary built; a TestMain calls it after
// m.Run.
func RemoveBinary() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

func buildBinary() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root, err := RepoRoot(wd)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "hookswitch-bin-")
	if err != nil {
		return "", err
	}
	build.dir = dir
	bin := filepath.Join(dir, "hookswitch")
	args := []string{"build", "-o", bin}
	if RaceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, ".")
	cmd := exec.Command(goTool(), args...)
	cmd.Dir = root
	cmd.Env = CleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s (in %s): %v\n%s", strings.Join(args, " "), root, err, out.String())
	}
	return bin, nil
}

// RepoRoot walks up from dir to the directory whose go.mod declares
// ModulePath.
func RepoRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modOf(b) == ModulePath {
			return dir, nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above %s; run from inside the repository", ModulePath, dir)
		}
		dir = parent
	}
}

func modOf(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// goTool is $GOROOT/bin/go when set (the toolchain `go run` and `go test`
// use), else go on PATH.
func goTool() string {
	if r := os.Getenv("GOROOT"); r != "" {
		if p := filepath.Join(r, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// RaceEnabled reports whether this program was built with -race.
func RaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// raceExitSleep replaces the race detector's default pause of 1 s at every
// process exit (GORACE atexit_sleep_ms), which would add a second to each
// CLI run and each node stop. A GORACE set by the caller is kept.
const raceExitSleep = "GORACE=atexit_sleep_ms=100"

// CleanEnv is this process's environment without HOOKSWITCH_* variables,
// so a developer's own settings (HOOKSWITCH_TOKEN, …) never leak into the
// nodes and command lines under test.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKSWITCH_") {
			env = append(env, kv)
		}
	}
	if _, ok := os.LookupEnv("GORACE"); !ok {
		env = append(env, raceExitSleep)
	}
	return env
}
