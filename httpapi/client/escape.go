package client

import (
	"strconv"
	"strings"
)

// Escape makes s safe to print on a terminal: control characters (C0,
// DEL, C1), line and paragraph separators, bidirectional formatting
// characters and invalid UTF-8 are written as Go escapes (\x1b, \u202e),
// and a backslash as \\ so an escape cannot be forged. The server refuses
// such text in what it stores, but the CLI does not trust that: a value
// stored by an older version, or a misbehaving server, must not drive the
// operator's terminal.
func Escape(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s // valid UTF-8 too: an invalid byte decodes to U+FFFD
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == 0xfffd && !strings.HasPrefix(s[i:], "\ufffd"):
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case r == 0xfffd: // a real U+FFFD is printable
			b.WriteRune(r)
		case needsEscape(r):
			q := strconv.QuoteRuneToASCII(r) // 'x' form: drop the quotes
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f, r == '\\', r == 0xfffd: // U+FFFD: maybe an invalid byte
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
