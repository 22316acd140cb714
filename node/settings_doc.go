package node

import (
	"errors"
	"fmt"
	"strings"
)

// The settings tables in docs/configuration.md sit between these markers,
// one block per group: SettingsDocBegin + `"GROUP"` + SettingsDocMarkerEnd,
// then the table, then SettingsDocEnd.
const (
	SettingsDocBegin     = "<!-- generated: settings "
	SettingsDocMarkerEnd = " (go generate ./node; do not edit) -->"
	SettingsDocEnd       = "<!-- end generated -->"
)

// ErrStaleDoc marks a settings document that does not match Settings.
var ErrStaleDoc = errors.New("settings doc is stale")

// SettingsTable is the Markdown table of one group of Settings.
func SettingsTable(group string) string {
	var b strings.Builder
	b.WriteString("| setting | default | meaning |\n|---|---|---|\n")
	for _, s := range Settings {
		if s.Group != group {
			continue
		}
		def := s.DocDefault
		if def == "" {
			def = "`" + s.Default() + "`"
			if s.Default() == "" {
				def = "empty"
			}
		}
		if s.DevDefault != "" {
			def += " (dev: `" + s.DevDefault + "`)"
		}
		doc := s.Doc
		if doc == "" {
			doc = strings.ToUpper(s.Help[:1]) + s.Help[1:] + "."
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, strings.ReplaceAll(doc, "|", `\|`))
	}
	return b.String()
}

// UpdateSettingsDoc returns doc with every generated settings block
// rewritten from Settings, and whether anything changed. Every group of
// SettingGroups must have its block.
func UpdateSettingsDoc(doc string) (string, bool, error) {
	out := doc
	for _, g := range SettingGroups {
		begin := SettingsDocBegin + `"` + g + `"` + SettingsDocMarkerEnd
		i := strings.Index(out, begin)
		if i < 0 {
			return doc, false, fmt.Errorf("%w: no block for group %q (a line %q)", ErrStaleDoc, g, begin)
		}
		start := i + len(begin)
		j := strings.Index(out[start:], SettingsDocEnd)
		if j < 0 {
			return doc, false, fmt.Errorf("%w: the block of group %q has no %q", ErrStaleDoc, g, SettingsDocEnd)
		}
		out = out[:start] + "\n" + SettingsTable(g) + out[start+j:]
	}
	return out, out != doc, nil
}
