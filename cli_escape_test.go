package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// TestSubDetailEscapes: what `sub get` prints carries no raw control or
// bidirectional character, whatever the server sent.
func TestSubDetailEscapes(t *testing.T) {
	var b bytes.Buffer
	subDetail(&b, httpapi.SubView{
		ID: "s\x1b[2J", Domain: "d\u202e", PostURL: "http://x/\x07", LastError: "e\r\n",
		Filters: []fsm.Filter{{Property: "p\x1b", Value: "v\u009b"}},
	})
	out := b.String()
	for _, bad := range []string{"\x1b", "\u202e", "\x07", "\r", "\u009b"} {
		if strings.Contains(out, bad) {
			t.Fatalf("output carries %q raw:\n%s", bad, out)
		}
	}
	for _, want := range []string{`s\x1b[2J`, `d\u202e`, `p\x1b=v\u009b`} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}
