package webhook

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch"
)

func TestEncode(t *testing.T) {
	e1 := mkEvent(t, 1, `{"model":"call","domain":"d","n":1}`)
	e2 := mkEvent(t, 2, `{"model":"call","user":["100","200"],"ok":true,"x":null,"o":{"a":"<b>"},"f":1.50,"s":"a&b=c"}`)
	empty := &dispatch.Event{ID: "inc-3", Node: "n1", IngestMs: 3, Model: "m", Body: []byte(`{}`)}
	tests := []struct {
		name     string
		encoding string
		evs      []*dispatch.Event
		want     []string
		ct       string
	}{
		{"json-array", EncodingJSONArray, []*dispatch.Event{e1, e2},
			[]string{`[{"model":"call","domain":"d","n":1,"event-id":"inc-1","node":"n1","ingest-time":1700000000001},` +
				`{"model":"call","user":["100","200"],"ok":true,"x":null,"o":{"a":"<b>"},"f":1.50,"s":"a&b=c","event-id":"inc-2","node":"n1","ingest-time":1700000000002}]`},
			ContentTypeJSON},
		{"default is json-array", "", []*dispatch.Event{empty},
			[]string{`[{"event-id":"inc-3","node":"n1","ingest-time":3}]`}, ContentTypeJSON},
		{"json-array of nothing", EncodingJSONArray, nil, []string{`[]`}, ContentTypeJSON},
		{"json one per event", EncodingJSON, []*dispatch.Event{e1, empty},
			[]string{`{"model":"call","domain":"d","n":1,"event-id":"inc-1","node":"n1","ingest-time":1700000000001}`,
				`{"event-id":"inc-3","node":"n1","ingest-time":3}`},
			ContentTypeJSON},
		{"form one per event", EncodingForm, []*dispatch.Event{e1, e2},
			[]string{
				"domain=d&event-id=inc-1&ingest-time=1700000000001&model=call&n=1&node=n1",
				url.Values{"model": {"call"}, "user": {`["100","200"]`}, "ok": {"true"}, "x": {"null"},
					"o": {`{"a":"<b>"}`}, "f": {"1.50"}, "s": {"a&b=c"},
					"event-id": {"inc-2"}, "node": {"n1"}, "ingest-time": {"1700000000002"}}.Encode(),
			},
			ContentTypeForm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pls, err := Encode(tt.encoding, tt.evs)
			if err != nil {
				t.Fatal(err)
			}
			if len(pls) != len(tt.want) {
				t.Fatalf("%d payloads, want %d", len(pls), len(tt.want))
			}
			for i, pl := range pls {
				if string(pl.Body) != tt.want[i] {
					t.Errorf("payload %d =\n %s\nwant\n %s", i, pl.Body, tt.want[i])
				}
				if pl.ContentType != tt.ct {
					t.Errorf("content type %q", pl.ContentType)
				}
				if tt.ct == ContentTypeJSON && !json.Valid(pl.Body) {
					t.Errorf("invalid JSON %s", pl.Body)
				}
			}
		})
	}
	if _, err := Encode("xml", []*dispatch.Event{e1}); err == nil {
		t.Fatal("unknown encoding: want error")
	}
}

func TestEncodeFormRoundTrip(t *testing.T) {
	ev := mkEvent(t, 9, `{"model":"call","nested":{"k":[1,"two"]},"uni":"Zoë ☃","amp":"x&y"}`)
	pls, err := Encode(EncodingForm, []*dispatch.Event{ev})
	if err != nil {
		t.Fatal(err)
	}
	v, err := url.ParseQuery(string(pls[0].Body))
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"model": {"call"}, "nested": {`{"k":[1,"two"]}`}, "uni": {"Zoë ☃"}, "amp": {"x&y"},
		"event-id": {"inc-9"}, "node": {"n1"}, "ingest-time": {"1700000000009"}}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("form = %v, want %v", v, want)
	}
}

func TestBatchID(t *testing.T) {
	evs := mkEvents(t, 1, 3)
	id := BatchID("sub-1", evs)
	if !strings.HasPrefix(id, "msg_") || len(id) != len("msg_")+batchIDHexLen {
		t.Fatalf("BatchID = %q", id)
	}
	same := mkEvents(t, 1, 3) // other pointers, same ids
	tests := []struct {
		name  string
		sub   string
		evs   []*dispatch.Event
		equal bool
	}{
		{"same batch", "sub-1", same, true},
		{"other subscription", "sub-2", evs, false},
		{"fewer events", "sub-1", evs[:2], false},
		{"other first event", "sub-1", evs[1:], false},
		{"other order", "sub-1", []*dispatch.Event{evs[1], evs[0], evs[2]}, false},
		{"id boundaries matter", "sub-", []*dispatch.Event{{ID: "1inc-1"}, evs[1], evs[2]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BatchID(tt.sub, tt.evs); (got == id) != tt.equal {
				t.Fatalf("BatchID = %s vs %s, want equal=%v", got, id, tt.equal)
			}
		})
	}
}

func TestEffectiveBatchMax(t *testing.T) {
	tests := []struct {
		enc  string
		max  int
		want int
	}{
		{EncodingJSONArray, 0, DefaultBatchMax},
		{"", 0, DefaultBatchMax},
		{EncodingJSONArray, 5, 5},
		{EncodingJSONArray, -1, DefaultBatchMax},
		{EncodingJSONArray, 5000, MaxBatchMax},
		{EncodingJSON, 100, 1},
		{EncodingForm, 100, 1},
	}
	for _, tt := range tests {
		if got := EffectiveBatchMax(tt.enc, tt.max); got != tt.want {
			t.Errorf("EffectiveBatchMax(%q, %d) = %d, want %d", tt.enc, tt.max, got, tt.want)
		}
	}
	for enc, ok := range map[string]bool{"": true, "json-array": true, "json": true, "form": true, "xml": false, "JSON": false} {
		if ValidEncoding(enc) != ok {
			t.Errorf("ValidEncoding(%q) != %v", enc, ok)
		}
	}
}

// The deepest event ingest accepts (dispatch.MaxEventDepth) is delivered
// whole in every encoding: form subscribers get its fields, not only the
// three stamps.
func TestEncodeDeepestAcceptedEvent(t *testing.T) {
	n := dispatch.MaxEventDepth - 1
	deep := strings.Repeat(`{"b":`, n) + "1" + strings.Repeat("}", n)
	ev := mkEvent(t, 1, `{"model":"call","domain":"d","a":`+deep+`}`)
	for _, enc := range []string{EncodingJSONArray, EncodingJSON, EncodingForm} {
		pls, err := Encode(enc, []*dispatch.Event{ev})
		if err != nil || len(pls) != 1 {
			t.Fatalf("%s: %d payloads, %v", enc, len(pls), err)
		}
		body := pls[0].Body
		if enc == EncodingForm {
			v, err := url.ParseQuery(string(body))
			if err != nil || v.Get("a") != deep || v.Get("domain") != "d" || v.Get("event-id") != ev.ID {
				t.Fatalf("form body lacks the event's fields: %.200s (%v)", body, err)
			}
			continue
		}
		var got any
		if err := json.Unmarshal(body, &got); err != nil || !strings.Contains(string(body), `"a":`+deep) {
			t.Fatalf("%s body: %v: %.200s", enc, err, body)
		}
	}
}
