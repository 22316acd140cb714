package kamailio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ErrBadEvent is wrapped by Map's errors: the frame is not a dialog event
// of docs/kamailio.cfg.
var ErrBadEvent = errors.New("kamailio: not a dialog event")

// Dialog events of docs/kamailio.cfg ("event").
const (
	EvInvite = "invite" // the initial INVITE: a new call
	EvAnswer = "answer" // dialog:start, the 200 OK
	EvEnd    = "end"    // dialog:end: an answered call hung up (or timed out)
	EvFailed = "failed" // dialog:failed: a call that was never answered
)

// Dispositions of a cdr.
const (
	DispAnswered  = "answered"
	DispBusy      = "busy"
	DispCancelled = "cancelled"
	DispNoAnswer  = "no-answer"
	DispFailed    = "failed"
)

// Disposition names the outcome of a call from its final reply code.
func Disposition(code int) string {
	switch {
	case code >= 200 && code < 300:
		return DispAnswered
	case code == 486 || code == 600:
		return DispBusy
	case code == 487:
		return DispCancelled
	case code == 408 || code == 480:
		return DispNoAnswer
	}
	return DispFailed
}

// Map turns one evapi payload into the hookswitch events it stands for, as
// JSON objects, in order: one call event, and after the call's end a cdr.
// Unknown "event" values map to nothing (nil, nil): a newer config may send
// more. Every other field of the payload is kept on the call event.
func Map(payload []byte) ([][]byte, error) {
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&in); err != nil || in == nil {
		return nil, fmt.Errorf("%w: the payload is not a JSON object", ErrBadEvent)
	}
	ev, _ := in["event"].(string)
	callid, _ := in["callid"].(string)
	if ev == "" || callid == "" {
		return nil, fmt.Errorf("%w: \"event\" and \"callid\" are required", ErrBadEvent)
	}
	str := func(k string) string { s, _ := in[k].(string); return s }
	fromUser, fromDomain, toUser, toDomain := str("from_user"), str("from_domain"), str("to_user"), str("to_domain")

	call := map[string]any{}
	for k, v := range in {
		switch k {
		case "model", "event-id", "node", "ingest-time", "reseller", "domain", "user":
			continue // hookswitch's own fields and the scope are set below
		}
		call["kamailio_"+k] = v
	}
	call["model"] = "call"
	call["source"] = "kamailio"
	call["callid"] = callid
	call["orig_callid"] = callid
	call["term_callid"] = callid
	call["orig_from_user"], call["orig_from_host"] = fromUser, fromDomain
	call["orig_to_user"], call["orig_to_host"] = toUser, toDomain
	call["orig_from_uri"] = sipURI(fromUser, fromDomain)
	call["orig_to_uri"] = sipURI(toUser, toDomain)
	setScope(call, fromUser, fromDomain, toUser, toDomain)
	initTs, answerTs, ts := str("init_ts"), str("answer_ts"), str("ts")
	call["time_start"] = initTs
	if answerTs != "" {
		call["time_answer"] = answerTs
	}
	code := 0
	if c, ok := in["code"].(json.Number); ok {
		if n, err := c.Int64(); err == nil && n > 0 && n < 1000 {
			code = int(n)
		}
	}
	switch ev {
	case EvInvite:
		call["event"], call["call-state"] = "start", "setup"
		return marshal(call)
	case EvAnswer:
		call["event"], call["call-state"] = "answer", "answered"
		return marshal(call)
	case EvEnd, EvFailed:
	default:
		return nil, nil
	}
	if ev == EvEnd {
		code = 200
	}
	disp := Disposition(code)
	call["event"], call["call-state"], call["remove"] = "end", "ended", "yes"
	call["time_release"] = ts
	call["disposition"] = disp
	if code != 0 {
		call["hangup_code"] = code
	}
	cdr := map[string]any{
		"model": "cdr", "source": "kamailio",
		"callid": callid, "orig_callid": callid, "term_callid": callid,
		"from": fromUser, "from_domain": fromDomain, "from_uri": sipURI(fromUser, fromDomain),
		"to": toUser, "to_domain": toDomain, "to_uri": sipURI(toUser, toDomain),
		"time_start": initTs, "time_release": ts,
		"disposition": disp, "answered": ev == EvEnd,
	}
	if code != 0 {
		cdr["hangup_code"] = code
	}
	if r := str("reason"); r != "" {
		cdr["reason"] = r
	}
	setScope(cdr, fromUser, fromDomain, toUser, toDomain)
	durMs := int64(0)
	if ev == EvEnd && answerTs != "" {
		cdr["time_answer"] = answerTs
		durMs = spanMs(answerTs, ts)
	}
	cdr["duration"] = int64(math.Round(float64(durMs) / 1000))
	cdr["duration_ms"] = durMs
	cdr["total_duration_ms"] = spanMs(initTs, ts)
	a, err := marshal(call)
	if err != nil {
		return nil, err
	}
	b, err := marshal(cdr)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// setScope sets domain (the caller's domain, and the callee's when it
// differs) and user (both parties).
func setScope(m map[string]any, fromUser, fromDomain, toUser, toDomain string) {
	if d := distinct(fromDomain, toDomain); d != nil {
		m["domain"] = d
	}
	if u := distinct(fromUser, toUser); u != nil {
		m["user"] = u
	}
}

// distinct is a, or [a, b] when both are set and differ, or nil.
func distinct(a, b string) any {
	switch {
	case a == "" && b == "":
		return nil
	case a == "":
		return b
	case b == "" || a == b:
		return a
	}
	return []string{a, b}
}

func sipURI(user, host string) string {
	if host == "" {
		return ""
	}
	if user == "" {
		return "sip:" + host
	}
	return "sip:" + user + "@" + host
}

// spanMs is to-from in milliseconds, for Kamailio's "seconds.micro"
// timestamps; 0 when either is missing or to is before from.
func spanMs(from, to string) int64 {
	f, ok1 := parseTs(from)
	t, ok2 := parseTs(to)
	if !ok1 || !ok2 || t < f {
		return 0
	}
	return (t - f) / 1000
}

// parseTs reads "seconds.micro" into microseconds.
func parseTs(s string) (int64, bool) {
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	us := int64(0)
	if frac != "" {
		frac = (frac + "000000")[:6]
		if us, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return 0, false
		}
	}
	return n*1e6 + us, true
}

func marshal(m map[string]any) ([][]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	return [][]byte{b}, nil
}
