package client

import "testing"

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            "plain",
		"Zoë ☃ 日本":         "Zoë ☃ 日本",
		"x\x1b[2Jy":        `x\x1b[2Jy`,
		"a\tb\nc\r":        `a\tb\nc\r`,
		"nul\x00":          `nul\x00`,
		"del\x7f":          `del\x7f`,
		"c1\u009b2J":       `c1\u009b2J`,
		"rlo\u202eevil":    `rlo\u202eevil`,
		"ls\u2028ps\u2029": `ls\u2028ps\u2029`,
		`back\slash`:       `back\\slash`,
		"bad\xffutf8":      `bad\xffutf8`,
		"real \ufffd":      "real \ufffd",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
