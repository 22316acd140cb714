package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// settingLine is a commented-out setting of the example config.
var settingLine = regexp.MustCompile(`(?m)^# ([a-z][a-z0-9-]*) = (.*)$`)

// TestConfigExampleDefaults: the example config names every agent
// setting once, and with every line uncommented it configures exactly the
// defaults (so each shown value is the true default and a valid value).
func TestConfigExampleDefaults(t *testing.T) {
	var out bytes.Buffer
	root := newRoot(&out, &out)
	root.SetArgs([]string{"config-example"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	example := out.String()

	names := map[string]int{}
	for _, m := range settingLine.FindAllStringSubmatch(example, -1) {
		names[m[1]]++
	}
	agent := newAgentCmd()
	want := 0
	agent.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" {
			return
		}
		want++
		if names[f.Name] != 1 {
			t.Errorf("setting %s appears %d times in the example, want once", f.Name, names[f.Name])
		}
	})
	if len(names) != want {
		t.Errorf("the example has %d settings, the agent %d", len(names), want)
	}

	uncommented := settingLine.ReplaceAllString(example, "$1 = $2")
	path := filepath.Join(t.TempDir(), "hookswitch.toml")
	if err := os.WriteFile(path, []byte(uncommented), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile := newAgentCmd()
	if err := fromFile.ParseFlags([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnvAndFile(fromFile.LocalFlags()); err != nil {
		t.Fatalf("the uncommented example does not load: %v", err)
	}
	got, err := agentConfig(fromFile.LocalFlags())
	if err != nil {
		t.Fatalf("the uncommented example is not a valid config: %v", err)
	}
	plain := newAgentCmd()
	if err := plain.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	def, err := agentConfig(plain.LocalFlags())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, def) {
		t.Errorf("the uncommented example configures\n%+v\nwant the defaults\n%+v", got, def)
	}
	if !strings.HasPrefix(example, "# hookswitch node configuration.") {
		t.Errorf("the example does not start with its header")
	}
}
