package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzStrictJSON feeds arbitrary bodies to the admin API's strict JSON
// check. Invariants: no panic; invalid UTF-8 is always refused; a body
// that encoding/json decodes into a map but that has fewer keys than the
// object spells (a duplicate) is refused; and a body the check accepts and
// encoding/json decodes round-trips through the subscription parser
// without a panic.
func FuzzStrictJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `[{"a":1},{"a":1}]`,
		`{"a":"\ud800"}`, `{"a":"\ufffd"}`, "{\"a\":\"\xff\"}", `{"a":[1,{"b":2,"c":{"d":3}}],"e":4}`,
		`{"model":"call","post-url":"http://x/","filters":[{"property":"p","value":"v"}]}`, `{`, `}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		err := checkJSONText(body)
		if !utf8.Valid(body) && err == nil {
			t.Fatalf("invalid UTF-8 accepted: %q", body)
		}
		if err != nil && !errors.Is(err, ErrBadJSON) {
			t.Fatalf("error %v does not wrap ErrBadJSON", err)
		}
		var m map[string]json.RawMessage
		if err == nil && json.Unmarshal(body, &m) == nil && m != nil {
			// Count the top-level keys as the decoder sees them.
			dec := json.NewDecoder(bytes.NewReader(body))
			n := 0
			if tok, _ := dec.Token(); tok == json.Delim('{') {
				for dec.More() {
					if _, err := dec.Token(); err != nil {
						return
					}
					var skip json.RawMessage
					if err := dec.Decode(&skip); err != nil {
						return
					}
					n++
				}
			}
			if n != len(m) {
				t.Fatalf("a duplicate key was accepted: %q", body)
			}
		}
		_, _ = parseSubInput(body, false)
		_, _ = parseSubInput(body, true)
	})
}
