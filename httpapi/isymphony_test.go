package httpapi

import (
	"encoding/json"
	"regexp"
	"slices"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch/match"
)

// The filter messages of iSymphony's "Websocket API Documentation (Event)"
// (version 27.1), as printed there. The documentation separates property
// and value with a colon, `{"property" : "type" : "value" : "dial"}`, which
// is not JSON; fixISymphonyQuoting turns it into what was meant.
var isymphonyFilterExamples = []struct {
	name string
	doc  string
	// want lists the i of the events below that the filters let in.
	want []int
}{
	{"correlation id", `{
"type" : "filter",
"correlationId" : "123456",
"filters" : [
{"property" : "type" : "value" : "dial"}
]
}`, []int{0, 1}},
	{"only dial", `{
"type" : "filter",
"filters" : [
{"property" : "type" : "value" : "dial"}
]
}`, []int{0, 1}},
	{"login and logout", `{
"type" : "filter",
"filters" : [
{"property" : "type" : "value" : "login"},
{"property" : "type" : "value" : "logout"}
]
}`, []int{2, 3, 4, 5}},
	{"login and logout for mikey", `{
"type" : "filter",
"filters" : [
{"property" : "type" : "value" : "login"},
{"property" : "type" : "value" : "logout"},
{"property" : "username" : "value" : "mikey"}
]
}`, []int{2, 3}},
	{"events that reference a user", `{
"type" : "filter",
"filters" : [
{"property" : "username" : "value" : "*"}
]
}`, []int{0, 2, 3, 4, 6}},
}

// isymphonyEvents carry iSymphony's base properties: type, and time (unix
// milliseconds). Event 6 is the documentation's own userLogin example.
var isymphonyEvents = []string{
	`{"model":"isym","i":0,"type":"dial","time":1436889915001,"username":"mikey"}`,
	`{"model":"isym","i":1,"type":"dial","time":1436889915002}`,
	`{"model":"isym","i":2,"type":"login","time":1436889915003,"username":"mikey"}`,
	`{"model":"isym","i":3,"type":"logout","time":1436889915004,"username":"mikey"}`,
	`{"model":"isym","i":4,"type":"login","time":1436889915005,"username":"bob"}`,
	`{"model":"isym","i":5,"type":"logout","time":1436889915006}`,
	`{"model":"isym","i":6,"coreServerId":"e5c01703-3c6d-429a-8712-66c826064e65","port":57042,"ip":"127.0.0.1","time":1436889915953,"type":"userLogin","userId":"e7577c7b-5d58-46a5-a834-386f52401c19","userLoginId":"0c51236d-5f93-4379-8997-8a840a511497","username":"mike"}`,
	`{"model":"isym","i":7,"type":"hangup","time":1436889915008,"userId":"e7577c7b"}`,
	`{"model":"other","i":8}`,
}

var isymphonyPropValue = regexp.MustCompile(`("property"\s*:\s*"[^"]*")\s*:\s*("value")`)

// fixISymphonyQuoting replaces the colon between a filter's property and
// "value" with the comma the documentation meant.
func fixISymphonyQuoting(doc string) string {
	return isymphonyPropValue.ReplaceAllString(doc, "$1, $2")
}

// TestISymphonyFilterExamplesMatch runs each documented filter message
// through the websocket's message handling and the filter matcher, against
// events with iSymphony's base properties. (TestWSISymphonyFilterExamples
// sends the same filters over a real websocket.)
func TestISymphonyFilterExamplesMatch(t *testing.T) {
	var events []map[string]any
	for _, e := range isymphonyEvents {
		var m map[string]any
		if err := json.Unmarshal([]byte(e), &m); err != nil {
			t.Fatal(err)
		}
		events = append(events, m)
	}
	for _, ex := range isymphonyFilterExamples {
		t.Run(ex.name, func(t *testing.T) {
			// As printed, the message is not JSON: an error reply.
			if r := replyOf(t, handleClientMessage([]byte(ex.doc), func([]match.Filter) error {
				t.Fatal("filters applied from a message that is not JSON")
				return nil
			})); r.Type != "error" {
				t.Fatalf("the documentation's message as printed: reply %+v, want an error", r)
			}
			var got []match.Filter
			r := replyOf(t, handleClientMessage([]byte(fixISymphonyQuoting(ex.doc)), func(fs []match.Filter) error {
				got = fs
				return nil
			}))
			if r.Type != "success" {
				t.Fatalf("fixed message %s: reply %+v, want success", fixISymphonyQuoting(ex.doc), r)
			}
			var msg struct {
				CorrelationID json.RawMessage `json:"correlationId"`
			}
			if err := json.Unmarshal([]byte(fixISymphonyQuoting(ex.doc)), &msg); err != nil {
				t.Fatal(err)
			}
			wantCorr := "null"
			if msg.CorrelationID != nil {
				wantCorr = string(msg.CorrelationID)
			}
			if string(r.CorrelationID) != wantCorr {
				t.Fatalf("correlationId %s, want %s", r.CorrelationID, wantCorr)
			}
			fs, err := match.NewFilterSet(got)
			if err != nil {
				t.Fatal(err)
			}
			in := []int{}
			for _, ev := range events {
				if fs.Match(ev) {
					in = append(in, int(ev["i"].(float64)))
				}
			}
			if !slices.Equal(in, ex.want) {
				t.Fatalf("filters %+v let in events %v, want %v", got, in, ex.want)
			}
		})
	}
}

func replyOf(t *testing.T, b []byte) wsReply {
	t.Helper()
	var r wsReply
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("reply %s: %v", b, err)
	}
	return r
}
