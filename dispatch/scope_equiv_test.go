package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// scopeModels are the models Scope is compared under: the auditlog ones
// read target_domain, the others do not.
var scopeModels = []string{ModelCall, ModelAuditlog, ModelAuditlogLite, ModelSubscriber, "cdr"}

// scopeSeeds are bodies on which Scope, forEachMember and Derived must agree
// with their references: the corners of the scope rules (scopeOnlySeeds)
// and the inputs of the ParseIngest equivalence.
func scopeSeeds() []string {
	return append(scopeOnlySeeds(), equivalenceSeeds()...)
}

// scopeOnlySeeds are the corners of the scope rules: duplicates, escaped
// keys and values, arrays, the auditlog target domain, nesting limits, data
// after the object.
func scopeOnlySeeds() []string {
	deepArr := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf(`"u%d"`, i)
	}
	longEscaped := strings.Repeat(`\u0064`, 14)
	seeds := []string{
		``, ` `, "\n\t", `{}`, ` { } `, `null`, `[]`, `"x"`, `5`, `true`, `[{"domain":"d"}]`, "\v{}", "\uFEFF{}",
		`{"domain":"d"}`, `{"domain":"d"`, `{"domain":"d",}`, `{"domain":"d"} `, `{"domain":"d"} x`, `{"domain":"d"}}`,
		`{"domain":"d"}{}`, `{"domain":"d"}{"domain":"e"}`, `{"domain":"d"}]`, `{"domain":"d"},`, `{"domain":"d"}` + "\x00",
		`{"reseller":"r","domain":"d","user":"u"}`, `{"reseller":["r"],"domain":["d1","d2"],"user":["u1","u2"]}`,
		`{ "reseller" : "r" , "domain" : [ "a" , "b" ] , "user" : [ ] }`, "{\n\t\"domain\":\n[\n\"a\"\n,\n5\n]\n}",
		`{"domain":""}`, `{"domain":[""]}`, `{"domain":[]}`, `{"domain":{}}`, `{"domain":null}`, `{"domain":5}`,
		`{"domain":true}`, `{"domain":-1.5e3}`, `{"domain":{"a":"b"}}`, `{"domain":[1,"a",null,["b"],{"c":"d"},"e",true]}`,
		`{"domain":[["a"]]}`, `{"domain":[[],{}]}`, `{"user":[` + strings.Join(many, ",") + `]}`,
		`{"user":[` + strings.Join(many[:6], ",") + `],"domain":"d"}`, `{"user":[` + strings.Join(many[:5], ",") + `],"domain":"d","reseller":"r"}`,
		`{"domain":"a","domain":"b"}`, `{"domain":"a","domain":5}`, `{"domain":5,"domain":"a"}`, `{"domain":["a"],"domain":[]}`,
		`{"dom\u0061in":"x"}`, `{"\u0064omain":"a","domain":"b"}`, `{"domain":"b","\u0064omain":"a"}`, `{"us\u0065r":["x"]}`,
		`{"` + longEscaped + `":"x","domain":"d"}`, `{"d\u006f\u006d\u0061\u0069\u006e":"x"}`, `{"domain\u0000":"x"}`,
		`{"Domain":"x","DOMAIN":"y"}`, `{"domain ":"x"}`, `{" domain":"x"}`, `{"doma":"x","domains":"y"}`,
		`{"domain":"a\u00e9\n\"\\\/"}`, `{"domain":"\ud800"}`, `{"user":["\ud83d\ude00","\udc00\ud800","x\"y"]}`,
		`{"domain":"` + strings.Repeat(`\u00e9`, 40) + `"}`, `{"user":["` + strings.Repeat(`\n`, 100) + `"]}`,
		"{\"domain\":\"caf\u00e9 \u2028\"}", "{\"domain\":\"\xff\"}", "{\"domain\xff\":\"x\",\"domain\":\"y\"}",
		"{\"domain\":\"d\",\"x\":\"\xc3\"}", "{\"domain\":[\"a\",\"\xed\xa0\x80\"]}",
		`{"target_domain":"t","domain":"d"}`, `{"domain":"d","target-domain":"k"}`, `{"target_domain":"t","target-domain":"k"}`,
		`{"target-domain":"k","target_domain":"t"}`, `{"target_domain":null,"domain":"d"}`, `{"target_domain":5,"domain":"d"}`,
		`{"target_domain":[],"domain":"d"}`, `{"target_domain":["a",1,"b"]}`, `{"target-domain":null,"domain":"d"}`,
		`{"target_domain":"t","target_domain":null}`, `{"target\u005fdomain":"t"}`, `{"target\u002ddomain":"k"}`,
		`{"model":"auditlog","reseller":"r","domain":"actor","user":"admin","target_domain":"victim","target_user":"u"}`,
		`{"domain":"d","a":` + deepArr(9998) + `}`, `{"domain":"d","a":` + deepArr(9999) + `}`,
		`{"domain":"d","a":` + deepArr(10000) + `}`, `{"domain":"d","a":` + deepArr(10001) + `}`,
		`{"domain":[` + deepArr(9998) + `,"x"]}`, `{"domain":[` + deepArr(9999) + `,"x"]}`, `{"domain":"d","a":` + deepArr(64) + `}`,
		`{"domain":"d","a":` + deepArr(65) + `}`, `{"domain":"d","a":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}`,
		`{"domain":"d","a":[1,2}`, `{"domain":"d","a":{"b":1]}`, `{"domain":"d","a":[1,]}`, `{"domain":"d","a":{"b":1,}}`,
		`{"domain":"d","a":{"b"}}`, `{"domain":"d","a":01}`, `{"domain":"d","a":tru}`, `{"domain":"d","a":"\x"}`,
		`{"domain":"d" "user":"u"}`, `{"domain":"d",,"user":"u"}`, `{"domain" "d"}`, `{"domain":}`, `{,}`, `{"domain":"d":1}`,
	}
	return seeds
}

// checkScope fails t unless Scope on body agrees with scopeReference for
// every model of scopeModels. fast says body is a ParseIngest output: then
// the scan must have handled it, unless encoding/json cannot decode it.
func checkScope(t *testing.T, body []byte, fast bool) {
	t.Helper()
	for _, model := range scopeModels {
		want := scopeReference(model, body)
		ev := &Event{ID: "i-1", Model: model, Body: body}
		got := ev.Scope()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("model %s body %s:\n got  %#v\n want %#v", model, show(body), got, want)
		}
		if again := ev.Scope(); !reflect.DeepEqual(again, want) {
			t.Fatalf("model %s body %s: cached scope %#v, want %#v", model, show(body), again, want)
		}
		for _, l := range [][]string{got.Reseller, got.Domain, got.User} {
			if cap(l) != len(l) && scanScope(model, body) != nil { // the fallback keeps the original's capacities
				t.Fatalf("model %s body %s: scope %#v has a slice with room to append into", model, show(body), got)
			}
		}
		if fast {
			var m map[string]any
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			decodes := dec.Decode(&m) == nil
			if scanned := scanScope(model, body) != nil; scanned != decodes {
				t.Fatalf("model %s body %s: scanScope handled it %v, encoding/json decodes it %v", model, show(body), scanned, decodes)
			}
		}
	}
}

// memberCall is one call of forEachMember's fn.
type memberCall struct {
	key, val string
}

var errStop = errors.New("stop")

// collectMembers runs each (forEachMember or its reference) on obj with an fn
// that records its calls and, after stopAfter of them (when >= 0), fails.
func collectMembers(each func([]byte, func(string, []byte) error) error, obj []byte, stopAfter int) ([]memberCall, error) {
	var calls []memberCall
	err := each(obj, func(key string, val []byte) error {
		calls = append(calls, memberCall{key, string(val)})
		if len(calls) == stopAfter {
			return errStop
		}
		return nil
	})
	return calls, err
}

// checkMembers fails t unless forEachMember agrees with
// forEachMemberReference on obj (calls, and the error it returns, its own or
// fn's) and Derived with derivedReference. fast says obj is a ParseIngest
// output: then the scans must have handled it.
func checkMembers(t *testing.T, obj []byte, fast bool) {
	t.Helper()
	for _, stop := range []int{-1, 1, 2} {
		want, wantErr := collectMembers(forEachMemberReference, obj, stop)
		got, gotErr := collectMembers(forEachMember, obj, stop)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) ||
			errors.Is(gotErr, errStop) != errors.Is(wantErr, errStop) || errors.Is(gotErr, errNotObject) != errors.Is(wantErr, errNotObject) {
			t.Fatalf("forEachMember(%s), stop after %d:\n got  %q %v\n want %q %v", show(obj), stop, got, gotErr, want, wantErr)
		}
	}
	ev := &Event{ID: "i-7", Node: "n", Seq: 7, IngestMs: 99, Model: "subscriber", Body: obj}
	for _, keep := range [][]string{nil, {}, {FieldUser, FieldDomain, "name-first-name", "site"}, {FieldModel, "a", "", "\u2028", "é"}} {
		for _, model := range []string{ModelPresence, "x\"y\u00e9"} {
			want, wantErr := derivedReference(ev, model, keep)
			got, gotErr := ev.Derived(model, keep)
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || (got == nil) != (want == nil) {
				t.Fatalf("Derived(%q, %q) of %s:\n got  %v\n want %v", model, keep, show(obj), gotErr, wantErr)
			}
			if want != nil && (!bytes.Equal(got.Body, want.Body) || got.ID != want.ID || got.Node != want.Node ||
				got.Seq != want.Seq || got.IngestMs != want.IngestMs || got.Model != want.Model) {
				t.Fatalf("Derived(%q, %q) of %s:\n got  %+v %s\n want %+v %s", model, keep, show(obj), got, got.Body, want, want.Body)
			}
		}
	}
	if fast {
		if _, ok := compactObject(obj); !ok {
			t.Fatalf("compactObject refused the stored body %s", show(obj))
		}
		if _, ok := appendKept(nil, obj, nil); !ok {
			t.Fatalf("appendKept refused the stored body %s", show(obj))
		}
	}
}

func show(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%q…(%d bytes)", b[:200], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// checkAll checks in as a body, and ParseIngest's output for it if any.
func checkAll(t *testing.T, in []byte, scope, members bool) {
	t.Helper()
	_, body, err := ParseIngest(in)
	if scope {
		checkScope(t, in, false)
		if err == nil {
			checkScope(t, body, true)
		}
	}
	if members {
		checkMembers(t, in, false)
		if err == nil {
			checkMembers(t, body, true)
		}
	}
}

func TestScopeEquivalentSeeds(t *testing.T) {
	for _, s := range scopeSeeds() {
		checkAll(t, []byte(s), true, true)
	}
}

// TestScopeEquivalentMutations compares on every prefix of the scope seeds
// and on every single-byte deletion, duplication and replacement by a few
// structural bytes. (The fuzzers mutate all the seeds.)
func TestScopeEquivalentMutations(t *testing.T) {
	repl := []byte(" \"\\{}[],:0\x80")
	seeds := scopeOnlySeeds()
	if testing.Short() {
		seeds = seeds[:20]
	}
	for _, s := range seeds {
		if len(s) > 120 {
			continue
		}
		b := []byte(s)
		for i := 0; i <= len(b); i++ {
			checkAll(t, b[:i], true, true)
			if i == len(b) {
				break
			}
			checkAll(t, append(append([]byte{}, b[:i]...), b[i+1:]...), true, true)
			checkAll(t, append(append([]byte{}, b[:i+1]...), b[i:]...), true, true)
			for _, c := range repl {
				m := append([]byte{}, b...)
				m[i] = c
				checkAll(t, m, true, true)
			}
		}
	}
}

// fuzzSeeds adds the seeds small enough to be worth mutating.
func fuzzSeeds(f *testing.F) {
	for _, s := range scopeSeeds() {
		if len(s) <= 4096 {
			f.Add([]byte(s))
		}
	}
}

// FuzzScopeEquivalent compares Scope with the original (decode the whole
// body into a map) on fuzzed bodies and on ParseIngest's output for them.
func FuzzScopeEquivalent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAll(t, in, true, false)
	})
}

// FuzzMembersEquivalent compares forEachMember and Derived with the
// originals (encoding/json's Decoder) on fuzzed bodies and on ParseIngest's
// output for them.
func FuzzMembersEquivalent(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		checkAll(t, in, false, true)
	})
}

// FuzzSkipValue checks the validating scanner on its own against
// encoding/json: on valid UTF-8, skipValue accepts exactly one value (then
// only whitespace) when json.Valid does, and reports whitespace inside it
// exactly when json.Compact changes it.
func FuzzSkipValue(f *testing.F) {
	for _, s := range []string{`1`, `[ 1 , { "a" : [ ] } ]`, `"\ud800"`, `{"a":1,}`, `[1 2]`, `-0.0e+1`, `01`,
		`{"a"}`, `[[[[]]]]`, `{"a":{"b":{"c":null}}}`, `"é\u2028"`, `tru`, `[1,]`, "[\n]", `{"a" :1}`, `{"a": 1}`,
		`{"a":1 }`, `{"a":1 ,"b":2}`, `{"a":1, "b":2}`, `[1 ,2]`, `[1, 2]`, `[ ]`, `{ }`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !utf8.Valid(in) {
			return
		}
		start := skipSpace(in, 0)
		end, space, ok := skipValue(in, start, maxNestingDepth)
		ok = ok && skipSpace(in, end) == len(in)
		if ok != json.Valid(in) {
			t.Fatalf("%q: skipValue ok=%v (end %d), json.Valid %v", in, ok, end, !ok)
		}
		if !ok {
			return
		}
		v := in[start:end]
		var compact bytes.Buffer
		if err := json.Compact(&compact, v); err != nil {
			t.Fatal(err)
		}
		if space != !bytes.Equal(compact.Bytes(), v) {
			t.Fatalf("%q: skipValue space=%v, compacts to %q", v, space, compact.Bytes())
		}
	})
}

// TestScopeAllocs pins the budget of a first Scope call: the Scope (with its
// string headers) and the text of its strings; nothing without scope members.
func TestScopeAllocs(t *testing.T) {
	for _, c := range []struct {
		obj  []byte
		want float64
	}{
		{benchCallEvent(), 2},
		{benchAuditlogEvent(), 2},
		{benchSubscriberEvent(), 2},
		{benchLargeEvent(), 2},
		{[]byte(`{"model":"call","x":1}`), 0},
	} {
		model, body, err := ParseIngest(c.obj)
		if err != nil {
			t.Fatal(err)
		}
		ev := &Event{ID: "i-1", Model: model, Body: body}
		if n := testing.AllocsPerRun(100, func() {
			resetEventCache(ev)
			ev.Scope()
		}); n > c.want {
			t.Errorf("Scope of %s: %v allocations, want %v", body, n, c.want)
		}
		if ev.parsed.Load() != nil {
			t.Errorf("Scope of %s parsed the body", body)
		}
	}
}

// TestDerivedAllocs pins the budget of Derived on a stored body: the body
// and the Event.
func TestDerivedAllocs(t *testing.T) {
	ev := &Event{ID: "i-1", Model: ModelSubscriber, Body: benchSubscriberEvent()}
	keep := []string{FieldUser, FieldDomain, "site"}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := ev.Derived(ModelPresence, keep); err != nil {
			t.Fatal(err)
		}
	}); n > 2 {
		t.Errorf("Derived: %v allocations, want 2", n)
	}
}
