package webhook

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/hookswitch/hookswitch/dispatch"
)

// Encodings of a subscription (DESIGN.md "Subscriptions").
const (
	EncodingJSONArray = "json-array" // one POST: a JSON array of the batch's events (default)
	EncodingJSON      = "json"       // one POST per event: the event object
	EncodingForm      = "form"       // one POST per event: form-encoded fields
)

// Content types of the POST bodies.
const (
	ContentTypeJSON = "application/json"
	ContentTypeForm = "application/x-www-form-urlencoded"
)

// Batch sizes for json-array (DESIGN.md "Subscriptions").
const (
	DefaultBatchMax = 100
	MaxBatchMax     = 1000
)

// batchIDHexLen is how many hex digits of the batch hash a webhook-id keeps
// (128 bits).
const batchIDHexLen = 32

// batchIDPrefix starts every webhook-id.
const batchIDPrefix = "msg_"

// ValidEncoding reports whether s names an encoding ("" means json-array).
func ValidEncoding(s string) bool {
	switch s {
	case "", EncodingJSONArray, EncodingJSON, EncodingForm:
		return true
	}
	return false
}

// EffectiveBatchMax is the most events one POST carries for a target:
// BatchMax clamped to 1..MaxBatchMax (0 means DefaultBatchMax) for
// json-array, and 1 for json and form.
func EffectiveBatchMax(encoding string, batchMax int) int {
	if encoding == EncodingJSON || encoding == EncodingForm {
		return 1
	}
	switch {
	case batchMax <= 0:
		return DefaultBatchMax
	case batchMax > MaxBatchMax:
		return MaxBatchMax
	}
	return batchMax
}

// Payload is one POST body and the events it carries.
type Payload struct {
	Body        []byte
	ContentType string
	Events      []*dispatch.Event
}

// Encode builds the POST bodies for a batch: json-array gives one body (a
// JSON array of the event objects, in order); json and form give one body per
// event. In form bodies every field of the event (stamps included) is one
// form field: strings as they are, other values as their JSON text.
func Encode(encoding string, evs []*dispatch.Event) ([]Payload, error) {
	switch encoding {
	case "", EncodingJSONArray:
		size := 2
		for _, ev := range evs {
			size += len(ev.Body) + len(ev.ID) + len(ev.Node) + 64
		}
		b := make([]byte, 0, size)
		b = append(b, '[')
		for i, ev := range evs {
			if i > 0 {
				b = append(b, ',')
			}
			b = ev.AppendJSON(b)
		}
		b = append(b, ']')
		return []Payload{{Body: b, ContentType: ContentTypeJSON, Events: evs}}, nil
	case EncodingJSON:
		out := make([]Payload, len(evs))
		for i, ev := range evs {
			out[i] = Payload{Body: ev.JSON(), ContentType: ContentTypeJSON, Events: evs[i : i+1]}
		}
		return out, nil
	case EncodingForm:
		out := make([]Payload, len(evs))
		for i, ev := range evs {
			b, err := formBody(ev)
			if err != nil {
				return nil, err
			}
			out[i] = Payload{Body: b, ContentType: ContentTypeForm, Events: evs[i : i+1]}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown encoding %q", encoding)
}

// formBody form-encodes one event. A body that does not parse still yields
// its stamps (event-id, node, ingest-time), so it is delivered, not lost.
func formBody(ev *dispatch.Event) ([]byte, error) {
	fields, _ := ev.Fields()
	v := make(url.Values, len(fields))
	for k, val := range fields {
		if s, ok := val.(string); ok {
			v.Set(k, s)
			continue
		}
		text, err := jsonText(val)
		if err != nil {
			return nil, fmt.Errorf("form-encode event %s field %q: %w", ev.ID, k, err)
		}
		v.Set(k, text)
	}
	return []byte(v.Encode()), nil
}

// jsonText is the JSON text of a parsed value, without HTML escaping.
func jsonText(val any) (string, error) {
	if n, ok := val.(json.Number); ok {
		return string(n), nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(val); err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})), nil
}

// BatchID is the webhook-id of a batch: "msg_" and 32 hex digits of
// SHA-256 over the subscription id and every event id of the batch (each
// preceded by a NUL byte). It depends on nothing else, so every retry of a
// batch, by this node or any other forming the same batch, has the same id,
// and batches with different events have different ids.
func BatchID(subID string, evs []*dispatch.Event) string {
	h := sha256.New()
	h.Write([]byte(subID))
	for _, ev := range evs {
		h.Write([]byte{0})
		h.Write([]byte(ev.ID))
	}
	sum := h.Sum(nil)
	return batchIDPrefix + hex.EncodeToString(sum)[:batchIDHexLen]
}
