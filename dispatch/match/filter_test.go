package match

import (
	"errors"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch"
)

func fieldsOf(t *testing.T, body string) map[string]any {
	t.Helper()
	ev := &dispatch.Event{ID: "i-1", Node: "n1", IngestMs: 42, Body: []byte(body)}
	f, err := ev.Fields()
	if err != nil {
		t.Fatalf("fields of %s: %v", body, err)
	}
	return f
}

func TestFilterSetMatch(t *testing.T) {
	const ev = `{"type":"login","username":"mikey","port":57042,"ratio":1.50,"ok":true,"gone":null,` +
		`"tags":["a","b",3],"nested":{"x":"y"},"empty":"","list2":[[ "deep" ]]}`
	f := func(p, v string) Filter { return Filter{Property: p, Value: v} }
	tests := []struct {
		name    string
		filters []Filter
		want    bool
	}{
		{"empty lets all in", nil, true},
		{"string exact", []Filter{f("type", "login")}, true},
		{"string mismatch", []Filter{f("type", "logout")}, false},
		{"string is case sensitive", []Filter{f("type", "Login")}, false},
		{"same property OR", []Filter{f("type", "logout"), f("type", "login")}, true},
		{"same property OR none", []Filter{f("type", "logout"), f("type", "dial")}, false},
		{"different properties AND", []Filter{f("type", "login"), f("username", "mikey")}, true},
		{"different properties AND one fails", []Filter{f("type", "login"), f("username", "bob")}, false},
		{"iSymphony login/logout for mikey", []Filter{f("type", "login"), f("type", "logout"), f("username", "mikey")}, true},
		{"missing property excludes", []Filter{f("absent", "x")}, false},
		{"missing property with star excludes", []Filter{f("absent", "*")}, false},
		{"star matches present", []Filter{f("username", "*")}, true},
		{"star matches null", []Filter{f("gone", "*")}, true},
		{"star matches object", []Filter{f("nested", "*")}, true},
		{"star overrides other values", []Filter{f("type", "nope"), f("type", "*")}, true},
		{"star before other values", []Filter{f("type", "*"), f("type", "nope")}, true},
		{"number by JSON text", []Filter{f("port", "57042")}, true},
		{"number other text", []Filter{f("port", "57042.0")}, false},
		{"number keeps source text", []Filter{f("ratio", "1.50")}, true},
		{"number not normalised", []Filter{f("ratio", "1.5")}, false},
		{"bool", []Filter{f("ok", "true")}, true},
		{"bool mismatch", []Filter{f("ok", "false")}, false},
		{"null by text", []Filter{f("gone", "null")}, true},
		{"array any element", []Filter{f("tags", "b")}, true},
		{"array number element", []Filter{f("tags", "3")}, true},
		{"array no element", []Filter{f("tags", "c")}, false},
		{"nested array element", []Filter{f("list2", "deep")}, true},
		{"object never equals a value", []Filter{f("nested", `{"x":"y"}`)}, false},
		{"empty string value", []Filter{f("empty", "")}, true},
		{"empty string does not match missing", []Filter{f("absent", "")}, false},
		{"hookswitch fields visible", []Filter{f("node", "n1"), f("ingest-time", "42"), f("event-id", "i-1")}, true},
	}
	fields := fieldsOf(t, ev)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, err := NewFilterSet(tt.filters)
			if err != nil {
				t.Fatal(err)
			}
			if got := fs.Match(fields); got != tt.want {
				t.Fatalf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterSetGoValues(t *testing.T) {
	// Fields built by hand (not by Event.Fields) still follow the rules.
	fields := map[string]any{"f": 2.5, "s": []string{"x", "y"}, "i": 7}
	tests := []struct {
		p, v string
		want bool
	}{
		{"f", "2.5", true},
		{"s", "y", true},
		{"s", "z", false},
		{"i", "7", false}, // unsupported Go type: only "*" matches
		{"i", "*", true},
	}
	for _, tt := range tests {
		fs, err := NewFilterSet([]Filter{{Property: tt.p, Value: tt.v}})
		if err != nil {
			t.Fatal(err)
		}
		if got := fs.Match(fields); got != tt.want {
			t.Errorf("%s=%s: Match = %v, want %v", tt.p, tt.v, got, tt.want)
		}
	}
}

func TestNewFilterSetErrors(t *testing.T) {
	tests := []struct {
		name    string
		filters []Filter
	}{
		{"empty property", []Filter{{Property: "", Value: "x"}}},
		{"too many", make([]Filter, MaxFilters+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewFilterSet(tt.filters); !errors.Is(err, ErrBadFilter) {
				t.Fatalf("err = %v, want ErrBadFilter", err)
			}
		})
	}
	var zero FilterSet
	if !zero.Empty() || !zero.Match(nil) {
		t.Fatal("zero FilterSet must be empty and match everything")
	}
}
