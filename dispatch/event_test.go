package dispatch

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestEventID(t *testing.T) {
	tests := []struct {
		name        string
		incarnation string
		seq         uint64
		want        string
	}{
		{"simple", "a1b2", 7, "a1b2-7"},
		{"zero", "x", 0, "x-0"},
		{"dashed incarnation", "2024-01-abc", 42, "2024-01-abc-42"},
		{"max seq", "i", ^uint64(0), "i-18446744073709551615"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EventID(tt.incarnation, tt.seq)
			if got != tt.want {
				t.Fatalf("EventID = %q, want %q", got, tt.want)
			}
			inc, seq, err := ParseEventID(got)
			if err != nil || inc != tt.incarnation || seq != tt.seq {
				t.Fatalf("ParseEventID(%q) = %q, %d, %v", got, inc, seq, err)
			}
		})
	}
}

func TestParseEventIDErrors(t *testing.T) {
	for _, id := range []string{"", "abc", "-5", "abc-", "abc-x", "abc-99999999999999999999999"} {
		t.Run(id, func(t *testing.T) {
			if _, _, err := ParseEventID(id); !errors.Is(err, ErrBadEventID) {
				t.Fatalf("ParseEventID(%q) err = %v, want ErrBadEventID", id, err)
			}
		})
	}
}

func TestAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		ev   *Event
		want string
	}{
		{
			name: "fields",
			ev:   &Event{ID: "inc-1", Node: "n1", IngestMs: 1700000000123, Body: []byte(`{"model":"call","a":1}`)},
			want: `{"model":"call","a":1,"event-id":"inc-1","node":"n1","ingest-time":1700000000123}`,
		},
		{
			name: "empty object",
			ev:   &Event{ID: "inc-2", Node: "n1", IngestMs: 5, Body: []byte(`{}`)},
			want: `{"event-id":"inc-2","node":"n1","ingest-time":5}`,
		},
		{
			name: "empty object with spaces",
			ev:   &Event{ID: "inc-3", Node: "n1", IngestMs: 5, Body: []byte(" { } \n")},
			want: `{"event-id":"inc-3","node":"n1","ingest-time":5}`,
		},
		{
			name: "nil body",
			ev:   &Event{ID: "inc-4", Node: "n1", IngestMs: 5},
			want: `{"event-id":"inc-4","node":"n1","ingest-time":5}`,
		},
		{
			name: "trailing whitespace",
			ev:   &Event{ID: "i-5", Node: "n", IngestMs: 1, Body: []byte("{\"a\":\"b\" }\n")},
			want: `{"a":"b","event-id":"i-5","node":"n","ingest-time":1}`,
		},
		{
			name: "node needing escapes",
			ev:   &Event{ID: "i-6", Node: "we\"ird\\n\x01", IngestMs: 1, Body: []byte(`{"a":[1,{"b":"}"}]}`)},
			want: `{"a":[1,{"b":"}"}],"event-id":"i-6","node":"we\"ird\\n\u0001","ingest-time":1}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.ev.JSON()
			if string(got) != tt.want {
				t.Fatalf("JSON =\n %s\nwant\n %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("JSON is not valid: %s", got)
			}
			prefix := []byte("[")
			got2 := tt.ev.AppendJSON(prefix)
			if string(got2) != "["+tt.want {
				t.Fatalf("AppendJSON = %s", got2)
			}
		})
	}
}

func TestAppendJSONString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"b\`, `"q\"b\\"`},
		{"\n\r\t\x00\x1f", `"\n\r\t\u0000\u001f"`},
		{"<&>", `"<&>"`},
		{"é☃😀", `"é☃😀"`},
		{"bad\xffutf8", `"bad\ufffdutf8"`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := string(AppendJSONString(nil, tt.in))
			if got != tt.want {
				t.Fatalf("AppendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			var back string
			if err := json.Unmarshal([]byte(got), &back); err != nil {
				t.Fatalf("not decodable: %v", err)
			}
			if strings.ToValidUTF8(tt.in, "\uFFFD") != back {
				t.Fatalf("round trip %q != %q", back, tt.in)
			}
		})
	}
}

func TestFields(t *testing.T) {
	ev := &Event{ID: "i-1", Node: "n1", IngestMs: 1234, Model: "call",
		Body: []byte(`{"model":"call","n":1.50,"big":12345678901234567890,"b":true,"z":null,"arr":["x",2]}`)}
	f, err := ev.Fields()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"model": "call", "n": json.Number("1.50"), "big": json.Number("12345678901234567890"),
		"b": true, "z": nil, "arr": []any{"x", json.Number("2")},
		"event-id": "i-1", "node": "n1", "ingest-time": json.Number("1234"),
	}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("Fields = %#v\nwant %#v", f, want)
	}
	f2, _ := ev.Fields()
	if reflect.ValueOf(f).Pointer() != reflect.ValueOf(f2).Pointer() {
		t.Fatal("Fields is not cached")
	}
}

func TestFieldsBadBody(t *testing.T) {
	ev := &Event{ID: "i-1", Body: []byte(`{"a":`)}
	f, err := ev.Fields()
	if err == nil {
		t.Fatal("want error for a truncated body")
	}
	if f["event-id"] != "i-1" {
		t.Fatalf("stamps missing from fields of a bad body: %v", f)
	}
	if s := ev.Scope(); s.Domain != nil {
		t.Fatalf("scope of a bad body = %+v", s)
	}
}

func TestFieldsConcurrent(t *testing.T) {
	ev := &Event{ID: "i-1", Model: "call", Body: []byte(`{"model":"call","domain":"d"}`)}
	var wg sync.WaitGroup
	const readers = 8
	maps := make([]map[string]any, readers)
	for i := range readers {
		wg.Go(func() {
			maps[i], _ = ev.Fields()
			_ = ev.Scope()
		})
	}
	wg.Wait()
	for i := 1; i < readers; i++ {
		if reflect.ValueOf(maps[i]).Pointer() != reflect.ValueOf(maps[0]).Pointer() {
			t.Fatal("concurrent Fields returned different maps")
		}
	}
}

func TestScope(t *testing.T) {
	tests := []struct {
		name  string
		model string
		body  string
		want  Scope
	}{
		{"none", "call", `{"model":"call"}`, Scope{}},
		{"strings", "call", `{"reseller":"r","domain":"d","user":"u"}`,
			Scope{Reseller: []string{"r"}, Domain: []string{"d"}, User: []string{"u"}}},
		{"arrays", "call", `{"domain":["d1","d2"],"user":["100","200"]}`,
			Scope{Domain: []string{"d1", "d2"}, User: []string{"100", "200"}}},
		{"non-strings ignored", "call", `{"domain":5,"user":["a",3]}`,
			Scope{User: []string{"a"}}},
		{"auditlog target_domain", "auditlog", `{"domain":"actor.example","target_domain":"victim.example"}`,
			Scope{Domain: []string{"victim.example"}}},
		{"auditlog target-domain", "auditlog", `{"domain":"actor","target-domain":"victim"}`,
			Scope{Domain: []string{"victim"}}},
		{"auditlog_lite target_domain", "auditlog_lite", `{"domain":"actor","target_domain":"victim"}`,
			Scope{Domain: []string{"victim"}}},
		{"auditlog without target falls back to domain", "auditlog", `{"domain":"actor"}`,
			Scope{Domain: []string{"actor"}}},
		{"target_domain ignored for other models", "call", `{"domain":"d","target_domain":"t"}`,
			Scope{Domain: []string{"d"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &Event{ID: "i-1", Model: tt.model, Body: []byte(tt.body)}
			got := ev.Scope()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Scope = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDerived(t *testing.T) {
	ev := &Event{ID: "i-9", Node: "n2", Seq: 9, IngestMs: 77, Model: "subscriber",
		Body: []byte(`{"model":"subscriber","user":"100","domain":"d","email":"a@b","user-presence-status":"open","site":{"x":1}}`)}
	tests := []struct {
		name  string
		model string
		keep  []string
		want  string
	}{
		{"reduce", "presence", []string{"user", "domain", "user-presence-status", "site", "missing"},
			`{"model":"presence","user":"100","domain":"d","user-presence-status":"open","site":{"x":1}}`},
		{"all fields", "other", nil,
			`{"model":"other","user":"100","domain":"d","email":"a@b","user-presence-status":"open","site":{"x":1}}`},
		{"keep nothing", "presence", []string{}, `{"model":"presence"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ev.Derived(tt.model, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			if string(d.Body) != tt.want {
				t.Fatalf("Body = %s, want %s", d.Body, tt.want)
			}
			if d.ID != ev.ID || d.Node != ev.Node || d.Seq != ev.Seq || d.IngestMs != ev.IngestMs || d.Model != tt.model {
				t.Fatalf("stamps not kept: %+v", d)
			}
		})
	}
	if _, err := (&Event{ID: "x", Body: []byte(`[1]`)}).Derived("p", nil); err == nil {
		t.Fatal("Derived of a non-object body: want error")
	}
}
