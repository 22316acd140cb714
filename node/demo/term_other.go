//go:build !linux

package demo

import "io"

// termWidth is 0 (unknown) off Linux: the line is not cut.
func termWidth(io.Writer) int { return 0 }
