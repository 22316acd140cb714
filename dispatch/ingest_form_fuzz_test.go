package dispatch

import (
	"encoding/json"
	"errors"
	"net/url"
	"reflect"
	"testing"
	"unicode/utf8"
)

// validUTF8 is s as a JSON encoder writes it: each byte of invalid UTF-8
// replaced by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		out = append(out, r) // utf8.RuneError for an invalid byte
		i += size
	}
	return string(out)
}

// FuzzIngestForm feeds arbitrary form bodies to the form ingest decoder
// (url.ParseQuery, FormToObject, ParseIngest, as the ingest handler does).
// Invariants: no panic; FormToObject always gives one valid JSON object that
// decodes to exactly the form's fields (a string for one value, an array of
// strings for several; "class" standing for an absent "model"); ParseIngest
// refuses only with ErrInvalidEvent, and what it accepts decodes (Fields) to
// the same fields less the reserved ones, plus the stamps.
func FuzzIngestForm(f *testing.F) {
	for _, s := range []string{
		"", "model=call", "class=call&event=start&machine=1", "model=call&user=100&user=200",
		"class=call&model=cdr", "model=call&event-id=fake&node=evil&ingest-time=1", "class=Bad+Class",
		"model=call&a%22b=x%0Ay", "model=call&domain=a&domain=b&reseller=r", "class=call&class=cdr",
		"model=call&x=%FF", "model=call&%FF=1&%FE=2", "model=call&x=%zz", "model=call;x=1", "=&=&model=call",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		vals, err := url.ParseQuery(body)
		if err != nil {
			return // 400 "malformed form body" in the handler
		}
		obj := FormToObject(vals)
		var got map[string]any
		if err := json.Unmarshal(obj, &got); err != nil {
			t.Fatalf("FormToObject(%q) = %s: not a JSON object: %v", body, obj, err)
		}
		want := map[string]any{}
		collide := false
		for k, vs := range vals {
			var v any
			if len(vs) == 1 {
				v = validUTF8(vs[0])
			} else {
				list := make([]any, len(vs))
				for i, s := range vs {
					list[i] = validUTF8(s)
				}
				v = list
			}
			key := validUTF8(k)
			if _, dup := want[key]; dup {
				collide = true // two keys that differ only in invalid UTF-8
			}
			want[key] = v
		}
		if _, ok := vals[FieldModel]; !ok {
			if c := vals[FieldClass]; len(c) == 1 {
				want[FieldModel] = validUTF8(c[0])
			}
		}
		if !collide && !reflect.DeepEqual(got, want) {
			t.Fatalf("FormToObject(%q) = %s, want the fields %v", body, obj, want)
		}
		model, stored, err := ParseIngest(obj)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("ParseIngest(%s): error not wrapping ErrInvalidEvent: %v", obj, err)
			}
			return
		}
		if collide {
			t.Fatalf("ParseIngest(%s) accepted duplicate keys", obj)
		}
		if !ValidModel(model) || got[FieldModel] != model {
			t.Fatalf("ParseIngest(%s): model %q", obj, model)
		}
		ev := &Event{ID: "inc-1", Node: "n1", Seq: 1, IngestMs: 5, Model: model, Body: stored}
		fields, err := ev.Fields()
		if err != nil {
			t.Fatalf("accepted form event %s does not decode: %v", stored, err)
		}
		for _, k := range []string{FieldEventID, FieldNode, FieldIngestTime} {
			delete(want, k)
		}
		stamps := map[string]any{FieldEventID: "inc-1", FieldNode: "n1", FieldIngestTime: json.Number("5")}
		if len(fields) != len(want)+len(stamps) {
			t.Fatalf("delivered %d fields, want %d: %v", len(fields), len(want)+len(stamps), fields)
		}
		for k, v := range stamps {
			if fields[k] != v {
				t.Fatalf("stamp %s = %v, want %v", k, fields[k], v)
			}
		}
		for k, v := range want {
			if !reflect.DeepEqual(fields[k], v) {
				t.Fatalf("field %q delivered as %#v, want %#v", k, fields[k], v)
			}
		}
	})
}
