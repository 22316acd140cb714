package httpapi

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch/match"
)

// FuzzWSFilterMessage feeds arbitrary client messages to the websocket
// filter message decoder. Invariants: no panic; the reply is always one JSON
// object {"correlationId","time","type"} with type "success" or "error", an
// error reply has a non-empty reason and a success none; the filters are
// applied (set called, and it accepted them) exactly on success, each with
// a non-empty property; the correlationId of a message that is an object is
// echoed; and the applied filters, sent again as a message, give the same
// filters (round trip).
func FuzzWSFilterMessage(f *testing.F) {
	for _, s := range []string{
		`{"type":"filter","correlationId":1,"filters":[{"property":"username","value":"mikey"}]}`,
		`{"type":"filter","correlationId":"c-1","filters":[]}`,
		`{"type":"filter","filters":[{"property":"n","value":1.50},{"property":"b","value":true},{"property":"x","value":"*"}]}`,
		`{"type":"filter","filters":[{"property":"","value":"a"}]}`, `{"type":"filter","filters":[{"property":"a"}]}`,
		`{"type":"filter","filters":[{"property":"a","value":null}]}`, `{"type":"filter","filters":[{"property":"a","value":{}}]}`,
		`{"type":"filter","filters":null}`, `{"type":"filter","filters":{}}`, `{"type":"filter"}`, `{"type":"ping"}`,
		`{"type":5}`, `{}`, `[]`, `null`, `"filter"`, `{"type":"filter",`, "", `{"correlationId":{"a":[1]},"type":"filter","filters":[]}`,
		"{\"type\":\"filter\",\"filters\":[{\"property\":\"\xff\",\"value\":\"\xfe\"}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var applied []match.Filter
		called := false
		set := func(fs []match.Filter) error {
			called = true
			if _, err := match.NewFilterSet(fs); err != nil {
				return err
			}
			applied = fs
			return nil
		}
		raw := handleClientMessage(in, set)
		var reply struct {
			CorrelationID json.RawMessage `json:"correlationId"`
			Error         string          `json:"error"`
			Time          *int64          `json:"time"`
			Type          string          `json:"type"`
		}
		if err := json.Unmarshal(raw, &reply); err != nil || reply.Time == nil || len(reply.CorrelationID) == 0 {
			t.Fatalf("reply to %q is not a reply object: %s (%v)", in, raw, err)
		}
		switch reply.Type {
		case "success":
			if reply.Error != "" || !called || applied == nil {
				t.Fatalf("success reply %s to %q (set called %v)", raw, in, called)
			}
		case "error":
			if reply.Error == "" {
				t.Fatalf("error reply without a reason to %q: %s", in, raw)
			}
			if called && applied != nil {
				t.Fatalf("error reply %s to %q, but the filters were applied", raw, in)
			}
			return
		default:
			t.Fatalf("reply type %q to %q", reply.Type, in)
		}
		for _, fl := range applied {
			if fl.Property == "" {
				t.Fatalf("filter with no property applied from %q", in)
			}
		}
		var msg map[string]json.RawMessage
		if err := json.Unmarshal(in, &msg); err != nil {
			t.Fatalf("success for a message that is not an object: %q", in)
		}
		if c, ok := msg["correlationId"]; ok && !jsonEqual(c, reply.CorrelationID) {
			t.Fatalf("correlationId %s echoed as %s", c, reply.CorrelationID)
		}
		again, err := json.Marshal(map[string]any{"type": "filter", "filters": applied})
		if err != nil {
			t.Fatal(err)
		}
		first := applied
		applied, called = nil, false
		if r := handleClientMessage(again, set); !bytes.Contains(r, []byte(`"type":"success"`)) || !filtersEqual(first, applied) {
			t.Fatalf("filters %v sent again as %s: reply %s, applied %v", first, again, r, applied)
		}
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func filtersEqual(a, b []match.Filter) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}
