package dispatch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestParseIngest(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantModel string
		wantBody  string
	}{
		{"minimal", `{"model":"call"}`, "call", `{"model":"call"}`},
		{"compacts and keeps order", "{ \"z\" : 1 ,\n \"model\" : \"cdr\", \"a\" : [ 1 , 2 ] }", "cdr", `{"z":1,"model":"cdr","a":[1,2]}`},
		{"keeps values byte for byte", `{"model":"call","n":1.50,"e":1e3,"s":"\u00e9<&>"}`, "call", `{"model":"call","n":1.50,"e":1e3,"s":"\u00e9<&>"}`},
		{"reserved fields removed", `{"event-id":"fake","model":"call","node":"evil","ingest-time":1,"x":"y"}`, "call", `{"model":"call","x":"y"}`},
		{"escaped reserved key removed", `{"model":"call","event\u002did":"fake"}`, "call", `{"model":"call"}`},
		{"class stands for model", `{"class":"call","event":"start"}`, "call", `{"class":"call","event":"start","model":"call"}`},
		{"model wins over class", `{"class":"other","model":"call"}`, "call", `{"class":"other","model":"call"}`},
		{"class with bad non-string ignored when model present", `{"class":5,"model":"call"}`, "call", `{"class":5,"model":"call"}`},
		{"scope strings", `{"model":"call","reseller":"r","domain":"d","user":"u"}`, "call", `{"model":"call","reseller":"r","domain":"d","user":"u"}`},
		{"scope arrays", `{"model":"call","domain":["a","b"],"user":[]}`, "call", `{"model":"call","domain":["a","b"],"user":[]}`},
		{"nested values pass through", `{"model":"x1_y","o":{"a":{"b":[null,true]}}}`, "x1_y", `{"model":"x1_y","o":{"a":{"b":[null,true]}}}`},
		{"64-char model", `{"model":"` + "a" + strings.Repeat("b", 63) + `"}`, "a" + strings.Repeat("b", 63), `{"model":"` + "a" + strings.Repeat("b", 63) + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model, body, err := ParseIngest([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseIngest: %v", err)
			}
			if model != tt.wantModel || string(body) != tt.wantBody {
				t.Fatalf("got %q %s, want %q %s", model, body, tt.wantModel, tt.wantBody)
			}
			if !json.Valid(body) {
				t.Fatalf("body not valid JSON: %s", body)
			}
		})
	}
}

func TestParseIngestErrors(t *testing.T) {
	big := `{"model":"call","x":"` + strings.Repeat("a", MaxEventBytes) + `"}`
	tests := []struct {
		name      string
		in        string
		wantField string
		wantIn    string // substring of the reason
	}{
		{"empty", ``, "", "unexpected end"},
		{"array", `[{"model":"call"}]`, "", "must be a JSON object"},
		{"string", `"call"`, "", "must be a JSON object"},
		{"null", `null`, "", "must be a JSON object"},
		{"truncated", `{"model":"call"`, "", "invalid JSON"},
		{"trailing data", `{"model":"call"} {}`, "", "data after the object"},
		{"garbage", `{model:call}`, "", "invalid JSON"},
		{"invalid utf8", "{\"model\":\"call\",\"x\":\"\xff\"}", "", "UTF-8"},
		{"no model", `{"a":1}`, "model", "model is required"},
		{"empty object", `{}`, "model", "model is required"},
		{"model not string", `{"model":5}`, "model", "must be a string"},
		{"model upper case", `{"model":"Call"}`, "model", "must match"},
		{"model starts with digit", `{"model":"1call"}`, "model", "must match"},
		{"model with dash", `{"model":"call-x"}`, "model", "must match"},
		{"model empty", `{"model":""}`, "model", "must match"},
		{"model wildcard", `{"model":"*"}`, "model", "must match"},
		{"model too long", `{"model":"a` + strings.Repeat("b", 64) + `"}`, "model", "must match"},
		{"bad class", `{"class":"Call Event"}`, "class", "standing for model"},
		{"class not string", `{"class":1}`, "model", "model is required"},
		{"domain number", `{"model":"call","domain":5}`, "domain", "string or an array of strings"},
		{"domain null", `{"model":"call","domain":null}`, "domain", "string or an array of strings"},
		{"user object", `{"model":"call","user":{"a":"b"}}`, "user", "string or an array of strings"},
		{"reseller array with number", `{"model":"call","reseller":["a",1]}`, "reseller", "string or an array of strings"},
		{"duplicate field", `{"model":"call","domain":"a","domain":"b"}`, "domain", "duplicate field"},
		{"duplicate model", `{"model":"call","model":"cdr"}`, "model", "duplicate field"},
		{"too large", big, "", "more than the limit"},
		{"nested one level too deep", `{"model":"call","a":` + strings.Repeat("[", MaxEventDepth) + strings.Repeat("]", MaxEventDepth) + `}`,
			"a", "more than the limit of 32"},
		{"nested as deep as encoding/json allows", `{"model":"call","a":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
			"a", "more than the limit of 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseIngest([]byte(tt.in))
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
			var ie *IngestError
			if !errors.As(err, &ie) {
				t.Fatalf("err %T is not *IngestError", err)
			}
			if ie.Field != tt.wantField {
				t.Errorf("Field = %q, want %q", ie.Field, tt.wantField)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("reason %q does not contain %q", err.Error(), tt.wantIn)
			}
		})
	}
}

func TestParseIngestLongValueInReasonIsTruncated(t *testing.T) {
	_, _, err := ParseIngest([]byte(`{"model":"` + strings.Repeat("X", 10000) + `"}`))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("reason not bounded: %d bytes", len(err.Error()))
	}
}

func TestFormToObject(t *testing.T) {
	tests := []struct {
		name string
		in   url.Values
		want string
	}{
		{"empty", url.Values{}, `{}`},
		{"class stands for model", url.Values{"class": {"call"}, "event": {"start"}, "machine": {"1"}},
			`{"class":"call","event":"start","machine":"1","model":"call"}`},
		{"model kept", url.Values{"class": {"call"}, "model": {"cdr"}}, `{"class":"call","model":"cdr"}`},
		{"repeated field is an array", url.Values{"model": {"call"}, "user": {"100", "200"}},
			`{"model":"call","user":["100","200"]}`},
		{"escapes", url.Values{"model": {"m"}, "a\"b": {"x\ny"}}, `{"a\"b":"x\ny","model":"m"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(FormToObject(tt.in))
			if got != tt.want {
				t.Fatalf("FormToObject = %s, want %s", got, tt.want)
			}
		})
	}
	// A form event goes through ParseIngest like a JSON one.
	model, body, err := ParseIngest(FormToObject(url.Values{"class": {"message"}, "node": {"spoof"}}))
	if err != nil || model != "message" || string(body) != `{"class":"message","model":"message"}` {
		t.Fatalf("ParseIngest(form) = %q %s %v", model, body, err)
	}
}

func FuzzParseIngest(f *testing.F) {
	for _, s := range []string{`{"model":"call"}`, `{"class":"x","domain":["a"]}`, `{}`, `[1]`, `{"model":"a","event-id":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		model, body, err := ParseIngest(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("error not wrapping ErrInvalidEvent: %v", err)
			}
			return
		}
		if !ValidModel(model) || !json.Valid(body) {
			t.Fatalf("accepted bad output %q %s", model, body)
		}
		ev := &Event{ID: "i-1", Node: "n", Model: model, Body: body}
		if !json.Valid(ev.JSON()) {
			t.Fatalf("JSON invalid for %s", body)
		}
		if _, err := ev.Fields(); err != nil {
			t.Fatalf("Fields failed on accepted body %s: %v", body, err)
		}
	})
}

// Ingest and delivery agree on nesting: whatever ParseIngest accepts,
// delivery decodes whole (filters, websocket filters and form encoding read
// Fields), and what delivery could not decode is refused at ingest with a
// reason naming the limit, never accepted and dropped.
func TestIngestDepthAgreesWithDelivery(t *testing.T) {
	nest := map[string]func(n int) string{
		"arrays":  func(n int) string { return strings.Repeat("[", n) + "1" + strings.Repeat("]", n) },
		"objects": func(n int) string { return strings.Repeat(`{"b":`, n) + "1" + strings.Repeat("}", n) },
	}
	for name, deep := range nest {
		for _, n := range []int{0, 1, MaxEventDepth - 1, MaxEventDepth, 9998, 9999, 10000, 10001} {
			t.Run(fmt.Sprintf("%s/%d", name, n), func(t *testing.T) {
				in := `{"model":"call","domain":"d","a":` + deep(n) + `,"z":"last"}`
				model, body, err := ParseIngest([]byte(in))
				if n < MaxEventDepth {
					if err != nil {
						t.Fatalf("value %d deep refused: %v", n, err)
					}
				} else {
					var ie *IngestError
					if !errors.As(err, &ie) || !strings.Contains(ie.Reason, fmt.Sprint(MaxEventDepth)) {
						t.Fatalf("value %d deep: err = %v, want a 400 reason naming the limit %d", n, err, MaxEventDepth)
					}
					if n < 10000 && ie.Field != "a" {
						t.Fatalf("Field = %q, want a", ie.Field)
					}
					return
				}
				ev := &Event{ID: "inc-1", Node: "n1", Seq: 1, IngestMs: 1, Model: model, Body: body}
				f, err := ev.Fields()
				if err != nil {
					t.Fatalf("accepted, but delivery cannot decode it: %v", err)
				}
				if _, ok := f["a"]; !ok || f["z"] != "last" || f[FieldEventID] != "inc-1" {
					t.Fatalf("delivery decoded %d fields without the nested one or the last: %v", len(f), f)
				}
				if s := ev.Scope(); len(s.Domain) != 1 || s.Domain[0] != "d" {
					t.Fatalf("scope %+v", s)
				}
			})
		}
	}
}
