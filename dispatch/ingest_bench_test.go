package dispatch

import (
	"fmt"
	"strings"
	"testing"
)

// benchCallEvent is a realistic ~330-byte call event, as a PBX adapter sends
// it (compact JSON, scope fields, SIP URIs, a number).
func benchCallEvent() []byte {
	return []byte(`{"model":"call","reseller":"r1","domain":"pbx.example.com","user":["100","101"],` +
		`"orig_callid":"a8f1c2d3e4f5a6b7c8d9-0@10.0.0.1","term_callid":"b7e6d5c4b3a2-0","orig_from_uri":"sip:100@pbx.example.com",` +
		`"orig_to_uri":"sip:101@pbx.example.com","call_state":"ringing","time_start":"2025-01-02 03:04:05",` +
		`"duration":42,"remove":"no"}`)
}

// benchLargeEvent is a ~2 KB CDR-like event: many string members, numbers,
// a nested object and array, a few escapes and non-ASCII text.
func benchLargeEvent() []byte {
	var b strings.Builder
	b.WriteString(`{"class":"cdr","reseller":"r1","domain":["pbx.example.com","other.example.com"],"user":"100",`)
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&b, `"field_%02d":"value %d with some text",`, i, i*7919)
	}
	b.WriteString(`"note":"caf\u00e9 \"quoted\" \\ path/to\/x","name":"Zoë Ångström",`)
	b.WriteString(`"legs":[{"n":1,"dur":12.5,"ok":true},{"n":2,"dur":0,"ok":false,"x":null}],`)
	b.WriteString(`"rate":-1.25e-3,"count":123456789012345678901234567890}`)
	return []byte(b.String())
}

func BenchmarkParseIngest(b *testing.B) { benchmarkParseIngest(b, ParseIngest) }

// BenchmarkParseIngestReference is the original implementation on the same
// events, for a before/after comparison under the same machine load.
func BenchmarkParseIngestReference(b *testing.B) { benchmarkParseIngest(b, parseIngestReference) }

func benchmarkParseIngest(b *testing.B, parse func([]byte) (string, []byte, error)) {
	for _, c := range []struct {
		name string
		obj  []byte
	}{
		{"call", benchCallEvent()},
		{"large", benchLargeEvent()},
	} {
		b.Run(fmt.Sprintf("%s-%dB", c.name, len(c.obj)), func(b *testing.B) {
			if _, _, err := parse(c.obj); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.obj)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := parse(c.obj); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
