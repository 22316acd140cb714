package httpapi

import "strings"

// notPrintable is the reason given for a string printable refuses.
const notPrintable = "must be printable text: no control characters (C0, DEL, C1), line or paragraph separators, or bidirectional overrides"

// printable reports whether s is safe to show on a terminal or in a log
// line (DESIGN.md "Security", limits): it has no C0 control character
// (tab and newline included), no DEL, no C1 control, no U+2028/U+2029, and
// no bidirectional formatting character (U+061C, U+200E/F, U+202A-E,
// U+2066-9), which can make text read differently from what it is.
func printable(s string) bool { return !strings.ContainsFunc(s, unsafeRune) }

func unsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x2028, r == 0x2029:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}
