package dispatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// equivalenceSeeds are inputs on which ParseIngest must behave exactly as
// parseIngestReference: the cases of TestParseIngest and
// TestParseIngestErrors plus the corners of the JSON grammar, of string
// unescaping (keys are compared and re-encoded as unescaped text), of the
// member rules and of the size limit.
func equivalenceSeeds() []string {
	deepArr := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	manyKeys := func(n int, extra string) string {
		var b strings.Builder
		b.WriteString(`{"model":"call"`)
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, `,"k%d":%d`, i, i)
		}
		return b.String() + extra + "}"
	}
	// pad gives a compacted body of exactly size bytes (with model "call").
	pad := func(size int, class bool) string {
		if class {
			// {"class":"call","x":"…"} plus ,"model":"call" (15 bytes).
			return `{"class":"call","x":"` + strings.Repeat("a", size-len(`{"class":"call","x":""}`)-15) + `"}`
		}
		return `{"model":"call","x":"` + strings.Repeat("a", size-len(`{"model":"call","x":""}`)) + `"}`
	}
	seeds := []string{
		// TestParseIngest
		`{"model":"call"}`,
		"{ \"z\" : 1 ,\n \"model\" : \"cdr\", \"a\" : [ 1 , 2 ] }",
		`{"model":"call","n":1.50,"e":1e3,"s":"\u00e9<&>"}`,
		`{"event-id":"fake","model":"call","node":"evil","ingest-time":1,"x":"y"}`,
		`{"model":"call","event\u002did":"fake"}`,
		`{"class":"call","event":"start"}`,
		`{"class":"other","model":"call"}`,
		`{"class":5,"model":"call"}`,
		`{"model":"call","reseller":"r","domain":"d","user":"u"}`,
		`{"model":"call","domain":["a","b"],"user":[]}`,
		`{"model":"x1_y","o":{"a":{"b":[null,true]}}}`,
		`{"model":"a` + strings.Repeat("b", 63) + `"}`,
		// TestParseIngestErrors
		``, `[{"model":"call"}]`, `"call"`, `null`, `{"model":"call"`, `{"model":"call"} {}`,
		`{model:call}`, "{\"model\":\"call\",\"x\":\"\xff\"}", `{"a":1}`, `{}`, `{"model":5}`,
		`{"model":"Call"}`, `{"model":"1call"}`, `{"model":"call-x"}`, `{"model":""}`, `{"model":"*"}`,
		`{"model":"a` + strings.Repeat("b", 64) + `"}`, `{"class":"Call Event"}`, `{"class":1}`,
		`{"model":"call","domain":5}`, `{"model":"call","domain":null}`, `{"model":"call","user":{"a":"b"}}`,
		`{"model":"call","reseller":["a",1]}`, `{"model":"call","domain":"a","domain":"b"}`,
		`{"model":"call","model":"cdr"}`, `{"model":"` + strings.Repeat("X", 10000) + `"}`,
		// Whitespace everywhere, and none.
		" \t\r\n{ \t\r\n\"model\" \t\r\n: \t\r\n\"call\" \t\r\n, \"a\" : [ 1 , { \"b\" : [ ] , \"c\" : { } } , [ ] ] \t\r\n} \t\r\n",
		`{"model":"call","a":[1,{"b":[],"c":{}},[]]}`,
		"{\"model\":\"call\",\"a\":[\n]}", "{\"model\":\"call\",\"a\":{\n}}", "\v{\"model\":\"call\"}", "{\"model\":\"call\"}\f",
		// Escapes in values (kept byte for byte) and in keys (unescaped, re-encoded).
		`{"model":"call","s":"\u0000\b\f\n\r\t\"\\\/\u001f\u007f\u2028"}`,
		`{"\u0000":1,"model":"call"}`,
		`{"\b\f\n\r\t\"\\\/\u001F\u00e9\u00E9":1,"model":"call"}`,
		"{\"model\":\"call\",\"<>&\u2028\u2029\":1,\"\u2028\":2}",
		`{"model":"call","\u2028":1,"` + "\u2028" + `":2}`,
		`{"model":"call","\ud83d\ude00":1}`, `{"model":"call","\uD83D\uDE00x":1}`,
		`{"\ud800":1,"\udbff":2,"model":"call"}`, `{"\ud800":1,"\ufffd":2,"model":"call"}`,
		`{"` + "\uFFFD" + `":1,"\udfff":2,"model":"call"}`,
		`{"model":"call","\ud800\u0041":1}`, `{"model":"call","\udc00\ud800":1}`, `{"model":"call","\ud800\ud800\udc00":1}`,
		`{"model":"call","k\ud800\\u0041":1}`, `{"model":"call","\ud800\\":1}`, `{"model":"call","\ud800":1,"\ud800\u0020":2}`,
		`{"model":"call","s":"\ud800","t":"\udc00\ud800"}`,
		`{"mo\u0064el":"call"}`, `{"model":"call","mo\u0064el":"cdr"}`, `{"mo\u0064el":"call","model":"cdr"}`,
		`{"model":"c\u0061ll"}`, `{"model":"\u0063all"}`, `{"model":"c\u0041ll"}`, `{"model":"call\u0000"}`,
		`{"event\u002did":1,"event-id":2,"model":"call"}`, `{"n\u006fde":1,"model":"call"}`, `{"\u006eode":"x","class":"cdr"}`,
		`{"cl\u0061ss":"c\u0064r"}`, `{"class":"c\u0064r","x":"\u0041"}`, `{"class":"\ud800"}`, `{"model":"\ud800"}`,
		`{"dom\u0061in":5,"model":"call"}`, `{"model":"call","\u0064omain":["a","b\u0041"]}`,
		`{"a\/b":1,"a/b":2,"model":"call"}`, `{"":1,"model":"call"}`, `{"":1,"":2}`, `{"\"":1,"model":"call"}`,
		`{"model":"call","x":"\x"}`, `{"model":"call","x":"\u12g4"}`, `{"model":"call","x":"\u12"}`, `{"model":"call","x":"\'"}`,
		"{\"model\":\"call\",\"x\":\"tab\there\"}", "{\"model\":\"call\",\"x\n\":1}", "{\"model\":\"call\",\"x\":\"\x7f\"}",
		"{\"model\":\"call\",\"\x01\":1}", `{"model":"call","x":"\`, `{"model":"call","x":"\u`, `{"model":"call","x":"\u00`,
		// Numbers.
		`{"model":"call","n":-0}`, `{"model":"call","n":1e5}`, `{"model":"call","n":01}`, `{"model":"call","n":1.}`,
		`{"model":"call","n":123456789012345678901234567890123456789}`, `{"model":"call","n":-}`, `{"model":"call","n":1e}`,
		`{"model":"call","n":1e+}`, `{"model":"call","n":1E-5}`, `{"model":"call","n":.5}`, `{"model":"call","n":+1}`,
		`{"model":"call","n":0.0e0}`, `{"model":"call","n":-01}`, `{"model":"call","n":1.5e}`, `{"model":"call","n":00}`,
		`{"model":"call","n":-0.0E+00}`, `{"model":"call","n":1e5.5}`, `{"model":"call","n":[01]}`, `{"model":"call","n":[1.]}`,
		`{"model":"call","n":1x}`, `{"model":"call","n":-a}`, `{"model":"call","n":0x10}`, `{"model":"call","n":1e-}`,
		`{"model":"call","n":1.e5}`, `{"model":"call","n":-.5}`, `{"model":"call","n":Infinity}`, `{"model":"call","n":NaN}`,
		`{"model":-0}`, `{"model":"call","n":1`, `{"model":"call","n":1.`, `{"model":"call","n":-`,
		// Literals.
		`{"model":"call","b":true,"c":false,"d":null}`, `{"model":"call","b":tru}`, `{"model":"call","b":trux}`,
		`{"model":"call","b":truex}`, `{"model":"call","b":nul}`, `{"model":"call","b":nulll}`, `{"model":"call","b":True}`,
		`{"model":"call","b":fals}`, `{"model":"call","b":fa1se}`, `{"model":"call","b":nUll}`, `{"model":"call","b":t`,
		`{"model":true}`, `{"model":null}`, `{"model":{}}`, `{"model":[]}`, `{"model":["call"]}`,
		`{"class":null}`, `{"class":null,"x":1}`, `{"class":true}`, `{"class":["call"]}`, `{"class":{}}`,
		`{"class":"call","model":null}`, `{"model":null,"class":"call"}`, `{"class":"call","model":5}`,
		`{"class":"call","node":"x","event-id":"y","ingest-time":1}`, `{"node":1,"class":"call"}`, `{"class":"call"}`,
		`{"node":1,"node":2,"model":"call"}`, `{"node":1,"model":"call"}`, `{"model":"call","node":1}`, `{"node":[,"model":"call"}`,
		// Scope fields.
		`{"model":"call","user":["a",null]}`, `{"model":"call","user":[["a"]]}`, `{"model":"call","user":[ "a" , "b" ]}`,
		`{"model":"call","domain":[]}`, `{"model":"call","domain":{}}`, `{"model":"call","domain":true}`,
		`{"model":"call","domain":[{}]}`, `{"model":"call","reseller":"a","reseller":5}`, `{"reseller":5}`, `{"user":["a",1],"model":1}`,
		`{"model":"call","user":["a",["b",1]]}`, `{"model":"call","user":[[]]}`, `{"model":"call","user":"\u0000"}`,
		// Structure errors, each context of encoding/json's messages.
		`{,}`, `{,"model":"call"}`, `{]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1,,}`, `{"a":1 "b":2}`, `{"a" 1}`, `{"a":1]`,
		`{"a":[1,]}`, `{"a":[1 2]}`, `{"a":[,1]}`, `{"a":{"b" 1}}`, `{"a":{"b":1,}}`, `{"a":{1:2}}`, `{"a":{"b":1]}`,
		`{"a":{"b":1 "c":2}}`, `{"a":[1}`, `{"a":{]}`, `{'a':1}`, `{"a"::1}`, `{"a":1:}`, `{:}`, `{{}}`, `{[]}`, `{1:2}`,
		`{"a":1}}`, `{"a":1}]`, `{"model":"call"}x`, `{"model":"call"} x`, `{"model":"call"}{`, `{"model":"call"},`,
		`{"model":"call"}` + "\x00", "\x00", " ", "\n\t ", `{`, `{ `, `{"`, `{"a`, `{"a"`, `{"a":`, `{"a":"`, `{"a":"b`,
		`{"a":"b"`, `{"a":"b",`, `{"a":[`, `{"a":{`, `{"a":{"b"`, `{"a":{"b":`, `{"a":[1,`, `{"a":{"b":1,`,
		`}`, `]`, `,`, `:`, `"`, `"abc`, `"a\x"`, "\"a\x01\"", `1`, `-`, `-x`, `01`, `1.x`, `1 2`, `tx`, `t`, `true`, `nul`,
		`[`, `[[[`, `x`, `{x`, `{"model":"call",}`, `{"model":"call",]`, `{"model":"call"]`, `{"model":"call",x}`,
		"\uFEFF{\"model\":\"call\"}", "{\u00e9:1}", "{\"model\":\"call\",\u00e9}", "{\"model\":\"call\"}\u00a0", "\u0085",
		"{\"model\":\"call\",\"a\":[\u00e9]}", "{\"model\":\"call\",\"a\":{\"b\"\u00ad}}", "{\"a\":\u00ff}",
		// Invalid UTF-8, alone or after another fault.
		"\xff", "{\"model\":\"call\"}\xff", "{\"model\":\"call\",\"x\":\"\xc3\"}", "{\"model\":\"call\",\"\xed\xa0\x80\":1}",
		"{\"model\":5,\"x\":\"\xff\"}", "{\"model\":\"call\",\"model\":1,\"\xff\":2}", "{,\xff}", "[\xff", "{\"a\":\"\xf4\x90\x80\x80\"}",
		"{\"model\":\"call\",\"x\":\"\xe2\x82\"}", "{\"model\":\"call\",\"x\":\"\xc0\xaf\"}", "{\"model\":\"call\"\xe2\x82",
		// Nesting: encoding/json allows 10000 levels inside one member value.
		`{"model":"call","a":` + deepArr(10000) + `}`, `{"model":"call","a":` + deepArr(10001) + `}`,
		`{"model":"call","a":` + deepObj(10000) + `}`, `{"model":"call","a":` + deepObj(10001) + `}`,
		`{"model":"call","a":` + deepArr(200) + `}`, `{"model":"call","a":` + strings.Repeat("[", 300) + `}`,
		`{"model":"call","a":` + strings.Repeat(`[{"b":`, 100) + `1` + strings.Repeat(`}]`, 100) + `}`,
		`{"model":"call","a":` + strings.Repeat(`[{"b":`, 100) + `1` + strings.Repeat(`]}`, 100) + `}`,
		deepArr(20000), `{"model":` + deepArr(10000) + `}`, `{"user":` + deepArr(10001) + `}`,
		// The event depth limit (MaxEventDepth), at its edge and inside strings.
		`{"model":"call","a":` + deepArr(MaxEventDepth-1) + `}`, `{"model":"call","a":` + deepArr(MaxEventDepth) + `}`,
		`{"model":"call","a":` + deepObj(MaxEventDepth-1) + `}`, `{"model":"call","a":` + deepObj(MaxEventDepth) + `}`,
		`{"a":` + deepArr(MaxEventDepth) + `,"model":5}`, `{"model":"call","a":` + deepArr(MaxEventDepth) + `,"a":1}`,
		`{"model":"call","a":[` + strings.Repeat(`"[{\"[",`, 40) + `1]}`, `{"node":` + deepArr(MaxEventDepth) + `,"model":"call"}`,
		// Many keys: the hashed duplicate check.
		manyKeys(40, ""), manyKeys(40, `,"k39":1`), manyKeys(40, `,"k\u0031":1`), manyKeys(31, `,"k0":1`),
		manyKeys(32, `,"k0":1`), manyKeys(33, `,"k32":1`), manyKeys(300, ""), manyKeys(300, `,"k150":1`),
		manyKeys(100, `,"node":1,"node":2`), manyKeys(31, ""), manyKeys(32, ""), manyKeys(33, ""),
		// The size limit, on the compacted body with model added.
		pad(MaxEventBytes, false), pad(MaxEventBytes+1, false), pad(MaxEventBytes, true), pad(MaxEventBytes+1, true),
		strings.Replace(pad(MaxEventBytes+1, false), `{`, "{ \n\t", 1), pad(MaxEventBytes+1, false)[:MaxEventBytes],
		`{"node":"` + strings.Repeat("n", MaxEventBytes) + `","model":"call"}`,
		// Long values quoted in reasons are truncated on a rune boundary.
		`{"model":"` + strings.Repeat("é", 100) + `"}`, `{"model":"` + strings.Repeat("a", 79) + `é"}`,
		`{"class":"` + strings.Repeat("a", 79) + "\U0001F600" + `"}`,
		`{"` + strings.Repeat("k", 79) + `é":1,"` + strings.Repeat("k", 79) + `\u00e9":2}`,
		// Realistic events.
		string(benchCallEvent()), string(benchLargeEvent()),
	}
	for _, m := range []string{"agent", "auditlog", "auditlog_lite", "call", "call_origid", "cdr", "message",
		"messagesession", "subscriber", "presence", "voicemail", "x", "z9_", "a_b_c"} {
		seeds = append(seeds, `{"model":"`+m+`"}`, `{"class":"`+m+`","a":1}`)
	}
	return seeds
}

// checkEquivalent fails t unless ParseIngest and parseIngestReference agree
// on in: the same model and body bytes, or errors with the same Field and
// Reason, both *IngestError wrapping ErrInvalidEvent.
func checkEquivalent(t *testing.T, in []byte) {
	t.Helper()
	wantModel, wantBody, wantErr := parseIngestReference(in)
	gotModel, gotBody, gotErr := ParseIngest(in)
	show := func(b []byte) string {
		if len(b) > 200 {
			return fmt.Sprintf("%q…(%d bytes)", b[:200], len(b))
		}
		return fmt.Sprintf("%q", b)
	}
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("input %s:\n got  %q %s %v\n want %q %s %v", show(in), gotModel, show(gotBody), gotErr, wantModel, show(wantBody), wantErr)
	}
	if wantErr != nil {
		var g, w *IngestError
		if !errors.As(gotErr, &g) || !errors.As(wantErr, &w) || !errors.Is(gotErr, ErrInvalidEvent) {
			t.Fatalf("input %s: error types: got %T %v, want %T %v", show(in), gotErr, gotErr, wantErr, wantErr)
		}
		if g.Field != w.Field || g.Reason != w.Reason {
			t.Fatalf("input %s:\n got  error field %q reason %q\n want error field %q reason %q", show(in), g.Field, g.Reason, w.Field, w.Reason)
		}
		if gotModel != "" || gotBody != nil {
			t.Fatalf("input %s: error %v with results %q %s", show(in), gotErr, gotModel, show(gotBody))
		}
		return
	}
	if gotModel != wantModel || !bytes.Equal(gotBody, wantBody) {
		t.Fatalf("input %s:\n got  %q %s\n want %q %s", show(in), gotModel, show(gotBody), wantModel, show(wantBody))
	}
}

func TestParseIngestEquivalentSeeds(t *testing.T) {
	for _, s := range equivalenceSeeds() {
		checkEquivalent(t, []byte(s))
	}
}

// TestParseIngestEquivalentMutations compares on every prefix of the small
// seeds and on every single-byte deletion, duplication and replacement by a
// handful of structural bytes: each error context in turn.
func TestParseIngestEquivalentMutations(t *testing.T) {
	repl := []byte(" \"\\{}[],:0-.eEtfnu\x00\x80\xff")
	for _, s := range equivalenceSeeds() {
		if len(s) > 400 {
			continue
		}
		b := []byte(s)
		for i := 0; i <= len(b); i++ {
			checkEquivalent(t, b[:i])
			if i == len(b) {
				break
			}
			checkEquivalent(t, append(append([]byte{}, b[:i]...), b[i+1:]...))
			checkEquivalent(t, append(append([]byte{}, b[:i+1]...), b[i:]...))
			for _, c := range repl {
				m := append([]byte{}, b...)
				m[i] = c
				checkEquivalent(t, m)
			}
		}
	}
}

func FuzzParseIngestEquivalent(f *testing.F) {
	for _, s := range equivalenceSeeds() {
		// The big seeds (size limit, deep nesting, many keys) are checked by
		// TestParseIngestEquivalentSeeds; mutating them mostly makes the
		// fuzzer spend its time minimising huge inputs.
		if len(s) <= 4096 {
			f.Add([]byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkEquivalent(t, in)
	})
}

// FuzzScanValue checks the scanner on its own against encoding/json: on
// valid UTF-8, scanValue accepts exactly one value (then only whitespace)
// when json.Valid does, and writes what json.Compact writes.
func FuzzScanValue(f *testing.F) {
	for _, s := range []string{`1`, ` [ 1 , { "a" : [ ] } ] `, `"\ud800"`, `{"a":1,}`, `[1 2]`, `-0.0e+1`, `01`,
		`{"a"}`, `[[[[]]]]`, `{"a":{"b":{"c":null}}}`, `"é\u2028"`, `tru`, `[1,]`, "[\n]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !utf8.Valid(in) {
			return
		}
		end, out, _, err := scanValue(in, 0, nil, nil)
		ok := err == nil && skipSpace(in, end) == len(in)
		if ok != json.Valid(in) {
			t.Fatalf("%q: scanValue ok=%v (end %d, err %v), json.Valid %v", in, ok, end, err, !ok)
		}
		if !ok {
			return
		}
		var want bytes.Buffer
		if err := json.Compact(&want, in); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, want.Bytes()) {
			t.Fatalf("%q: compacted to %q, want %q", in, out, want.Bytes())
		}
	})
}

// FuzzAppendUnquoted checks that appendUnquoted decodes a JSON string as
// encoding/json does (lone and ill-paired surrogates included).
func FuzzAppendUnquoted(f *testing.F) {
	for _, s := range []string{`abc`, `\u0000\b\f\n\r\t\"\\\/`, `\ud83d\ude00`, `\ud800`, `\udc00\ud800`, `\ud800\u0041`,
		`\ud800\\u0041`, `\uD800\uDFFF`, `\ud800\ud800\udc00`, `é\u00e9`, `\u`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		quoted := append(append([]byte{'"'}, in...), '"')
		end, _, err := scanString(quoted, 0)
		if err != nil || end != len(quoted) {
			return
		}
		var want string
		if err := json.Unmarshal(quoted, &want); err != nil {
			t.Fatalf("%q: scanString accepted, json.Unmarshal: %v", quoted, err)
		}
		if got := appendUnquoted(nil, in); string(got) != want {
			t.Fatalf("%q: unquoted to %q, want %q", quoted, got, want)
		}
	})
}

// FuzzValidModel checks the hand-written model check against the original
// regular expression.
func FuzzValidModel(f *testing.F) {
	for _, s := range []string{"", "a", "call", "Call", "1a", "a-b", "a_b9", "é", "a\n", strings.Repeat("a", 64), strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidModel(s), modelPatternReference.MatchString(s); got != want {
			t.Fatalf("ValidModel(%q) = %v, want %v", s, got, want)
		}
	})
}

// TestParseIngestAllocs pins the allocation budget: the body only.
func TestParseIngestAllocs(t *testing.T) {
	for _, obj := range [][]byte{benchCallEvent(), benchLargeEvent()} {
		if n := testing.AllocsPerRun(100, func() {
			if _, _, err := ParseIngest(obj); err != nil {
				t.Fatal(err)
			}
		}); n > 1 {
			t.Errorf("ParseIngest of %d bytes: %v allocations, want 1", len(obj), n)
		}
	}
}
