package httpsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/hookswitch/hookswitch/dispatch"
	"github.com/hookswitch/hookswitch/store/eventlog"
)

// Request limits (DESIGN.md "Ingest"). The per-event limit is
// dispatch.MaxEventBytes (64 KiB of compacted object).
const (
	// MaxBodyBytes is the largest accepted request body: 4 MiB. A larger
	// body is answered 413 and nothing of it is stored.
	MaxBodyBytes = 4 << 20
	// MaxEvents is the most events one request may carry. More is answered
	// 413 (the request content is larger than the server will process, like
	// an oversize body; the client must split it) and nothing is stored. A
	// single event over dispatch.MaxEventBytes is instead a 400 naming its
	// index: that event is invalid, the request size is not the problem.
	MaxEvents = 10000
)

// Appender is where accepted events go (implemented by *eventlog.Log).
type Appender interface {
	// Append stores all entries atomically with consecutive sequence
	// numbers from firstSeq, and returns only once they are durable.
	Append(ctx context.Context, entries []eventlog.Entry) (firstSeq uint64, ingestMs int64, err error)
	// Incarnation is the log incarnation id the event ids are made of.
	Incarnation() string
}

// Authorizer decides whether a request may ingest. It is given the request
// (remote address, headers) before its body is read. ok true allows it;
// otherwise the request is answered with status (401 or 403; anything that
// is not a 4xx/5xx status becomes 403) and msg as the JSON error. It must not
// read the body.
type Authorizer func(r *http.Request) (status int, msg string, ok bool)

// AllowAll is an Authorizer that allows every request, for tests and
// embedding where access is decided elsewhere.
func AllowAll(*http.Request) (status int, msg string, ok bool) { return 0, "", true }

// Options configures New.
type Options struct {
	Log        Appender     // required
	Authorize  Authorizer   // required; AllowAll to let everyone in
	Logger     *slog.Logger // component=ingest is added; default slog.Default()
	OnAccepted func(n int)  // called with the number of events of each accepted request; may be nil
}

// New returns the handler of POST /v1/events. It panics when opts.Log or
// opts.Authorize is nil: an ingest endpoint without a log or without an
// access decision is a wiring bug, not a runtime condition.
func New(opts Options) http.Handler {
	if opts.Log == nil {
		panic("httpsource: Options.Log is nil")
	}
	if opts.Authorize == nil {
		panic("httpsource: Options.Authorize is nil (use AllowAll to allow every caller)")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	h := &handler{
		log:        opts.Log,
		authorize:  opts.Authorize,
		logger:     logger.With("component", "ingest"),
		onAccepted: opts.OnAccepted,
		ctJSON:     []string{"application/json"},
		allowPost:  []string{http.MethodPost},
		retryAfter: []string{"1"},
	}
	h.bufs.New = func() any { b := make([]byte, 0, initialBuf); return &b }
	h.entries.New = func() any { e := make([]eventlog.Entry, 0, initialEntries); return &e }
	return h
}

const (
	// initialBuf is the initial size of a pooled body/response buffer.
	initialBuf = 4 << 10
	// initialEntries is the initial capacity of a pooled entries slice.
	initialEntries = 16
	// wwwAuthenticate is sent with a 401, as the rest of the API does.
	wwwAuthenticate = `Bearer realm="hookswitch"`
)

type handler struct {
	log        Appender
	authorize  Authorizer
	logger     *slog.Logger
	onAccepted func(int)

	bufs    sync.Pool // *[]byte: request body, then the response
	entries sync.Pool // *[]eventlog.Entry

	// Header values, shared read-only by every response (len == cap, so an
	// Add by a wrapper copies instead of writing into them).
	ctJSON, allowPost, retryAfter []string
}

// bodyKind is how a request body is to be read, from its Content-Type.
type bodyKind int

const (
	kindUnsupported bodyKind = iota
	kindJSON                 // application/json, application/*+json
	kindSniff                // no Content-Type or text/plain: JSON if it looks like it
	kindForm                 // application/x-www-form-urlencoded
)

// reqError is a request refused before anything was stored.
type reqError struct {
	status int
	msg    string
	field  string
	index  int // the event at fault, or -1
}

// errorBody is the JSON error of the API (DESIGN.md: code, message, error,
// field), with the index of the event at fault for ingest.
type errorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Error   string `json:"error"`
	Field   string `json:"field"`
	Index   *int   `json:"index,omitempty"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = h.allowPost
		h.fail(w, &reqError{status: http.StatusMethodNotAllowed, index: -1,
			msg: "method " + r.Method + " is not allowed on this endpoint: use POST"})
		return
	}
	if status, msg, ok := h.authorize(r); !ok {
		if status < 400 || status > 599 {
			status = http.StatusForbidden
		}
		if msg == "" {
			msg = strings.ToLower(http.StatusText(status))
		}
		if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
			w.Header().Set("WWW-Authenticate", wwwAuthenticate)
		}
		h.fail(w, &reqError{status: status, msg: msg, index: -1})
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		h.fail(w, &reqError{status: http.StatusUnsupportedMediaType, index: -1,
			msg: fmt.Sprintf("Content-Encoding %q is not supported: send the body uncompressed", truncate(ce))})
		return
	}
	ct := r.Header.Get("Content-Type")
	kind := classify(ct)
	if kind == kindUnsupported {
		h.fail(w, unsupported(ct))
		return
	}
	if r.ContentLength > MaxBodyBytes {
		h.fail(w, tooLarge())
		return
	}

	src := r.Body
	if src == nil { // only a hand-made request; servers always set Body
		src = http.NoBody
	}
	bufp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bufp)
	body, err := readBody(http.MaxBytesReader(w, src, MaxBodyBytes), (*bufp)[:0], r.ContentLength)
	*bufp = body[:0] // keep the grown buffer
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.fail(w, tooLarge())
			return
		}
		h.logger.Debug("reading the request body failed", "remote", r.RemoteAddr, "err", err)
		h.fail(w, &reqError{status: http.StatusBadRequest, index: -1,
			msg: "reading the request body failed: " + err.Error()})
		return
	}

	entp := h.entries.Get().(*[]eventlog.Entry)
	defer h.putEntries(entp)
	entries, rerr := parseBody(kind, ct, body, (*entp)[:0])
	*entp = entries // with its length, so putEntries clears what was used
	if rerr != nil {
		h.logger.Debug("ingest request refused", "remote", r.RemoteAddr, "status", rerr.status, "reason", rerr.msg)
		h.fail(w, rerr)
		return
	}

	first, _, err := h.log.Append(r.Context(), entries)
	if err != nil {
		h.appendFailed(w, r, len(entries), err)
		return
	}

	out := appendAccepted((*bufp)[:0], h.log.Incarnation(), first, len(entries))
	*bufp = out[:0]
	hdr := w.Header()
	hdr["Content-Type"] = h.ctJSON
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(out)
	if h.onAccepted != nil {
		h.onAccepted(len(entries))
	}
}

// putEntries returns an entries slice to the pool without the references to
// the request's bodies. Pooled slices are zero beyond their length, so
// clearing up to the length is enough.
func (h *handler) putEntries(p *[]eventlog.Entry) {
	clear(*p)
	*p = (*p)[:0]
	h.entries.Put(p)
}

func (h *handler) appendFailed(w http.ResponseWriter, r *http.Request, n int, err error) {
	msg := "the event log could not store the events; none of them was accepted, retry the request"
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, eventlog.ErrNoSpace):
		// The log says so once per episode; a PBX retrying would
		// otherwise flood the journal of a node that is already short of
		// disk.
		status = http.StatusInsufficientStorage
		msg = "the disk under the event log is full; none of the events was accepted, retry the request once space returns"
	case r.Context().Err() != nil:
		// The client is gone: the log may or may not have taken the
		// events (eventlog.Log.Append); nobody reads this answer.
		h.logger.Warn("ingest request cancelled before the events were durable; outcome unknown",
			"events", n, "remote", r.RemoteAddr, "err", err)
		msg = "the request was cancelled before the events were durable; their outcome is unknown"
	default:
		h.logger.Error("append to the event log failed; answered 503",
			"events", n, "remote", r.RemoteAddr, "err", err)
	}
	w.Header()["Retry-After"] = h.retryAfter
	h.fail(w, &reqError{status: status, msg: msg, index: -1})
}

// fail writes e as the JSON error.
func (h *handler) fail(w http.ResponseWriter, e *reqError) {
	body := errorBody{Code: e.status, Message: e.msg, Error: e.msg, Field: e.field}
	if e.field != "" {
		body.Message = e.field + ": " + e.msg
	}
	if e.index >= 0 {
		body.Index = &e.index
	}
	b, err := json.Marshal(body)
	if err != nil { // cannot happen: strings and an int
		b = []byte(`{"code":500,"message":"internal error","error":"internal error","field":""}`)
	}
	w.Header()["Content-Type"] = h.ctJSON
	w.WriteHeader(e.status)
	_, _ = w.Write(append(b, '\n'))
}

// appendAccepted appends the 202 body: {"accepted":n,"event-ids":[...]}.
// Each id is dispatch.EventID(incarnation, first+i), written without a
// string per event.
func appendAccepted(dst []byte, incarnation string, first uint64, n int) []byte {
	var pre [64]byte
	quoted := dispatch.AppendJSONString(pre[:0], incarnation) // "inc"
	quoted = quoted[:len(quoted)-1]                           // "inc
	dst = append(dst, `{"accepted":`...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, `,"event-ids":[`...)
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, quoted...)
		dst = append(dst, '-')
		dst = strconv.AppendUint(dst, first+uint64(i), 10)
		dst = append(dst, '"')
	}
	return append(dst, "]}\n"...)
}

// classify maps a Content-Type header to how the body is read. Parameters
// are ignored except a charset other than UTF-8 on JSON (RFC 8259: JSON
// exchanged between systems is UTF-8), which is unsupported.
func classify(ct string) bodyKind {
	media, params, _ := strings.Cut(ct, ";")
	media = strings.TrimSpace(media)
	switch {
	case media == "":
		return kindSniff
	case strings.EqualFold(media, "application/x-www-form-urlencoded"):
		return kindForm
	case strings.EqualFold(media, "text/plain"):
		if !utf8Charset(params) {
			return kindUnsupported
		}
		return kindSniff
	case strings.EqualFold(media, "application/json") || isJSONSuffix(media):
		if !utf8Charset(params) {
			return kindUnsupported
		}
		return kindJSON
	}
	return kindUnsupported
}

// isJSONSuffix reports application/<something>+json (RFC 6839).
func isJSONSuffix(media string) bool {
	const prefix, suffix = "application/", "+json"
	return len(media) > len(prefix)+len(suffix) &&
		strings.EqualFold(media[:len(prefix)], prefix) &&
		strings.EqualFold(media[len(media)-len(suffix):], suffix)
}

// utf8Charset reports whether the media type parameters name no charset or
// UTF-8 (or its subset US-ASCII).
func utf8Charset(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "charset") {
			continue
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		return strings.EqualFold(v, "utf-8") || strings.EqualFold(v, "utf8") || strings.EqualFold(v, "us-ascii")
	}
	return true
}

func unsupported(ct string) *reqError {
	what := "no Content-Type and a body that is not JSON"
	if ct != "" {
		what = fmt.Sprintf("Content-Type %q", truncate(ct))
	}
	return &reqError{status: http.StatusUnsupportedMediaType, index: -1,
		msg: what + " is not supported: send application/json (UTF-8) or application/x-www-form-urlencoded"}
}

func tooLarge() *reqError {
	return &reqError{status: http.StatusRequestEntityTooLarge, index: -1,
		msg: fmt.Sprintf("request body is larger than the limit of %d bytes (4 MiB): split it into several requests", MaxBodyBytes)}
}

// readBody reads r to the end into dst (grown as needed). contentLength,
// when known, sizes the buffer in one go.
func readBody(r io.Reader, dst []byte, contentLength int64) ([]byte, error) {
	if contentLength > 0 && int64(cap(dst)) < contentLength+1 {
		dst = make([]byte, 0, contentLength+1) // +1: room to read EOF without growing
	}
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

// parseBody validates every event of the body and returns them as entries
// (appended to dst), or the error that refuses the whole request.
func parseBody(kind bodyKind, ct string, body []byte, dst []eventlog.Entry) ([]eventlog.Entry, *reqError) {
	if kind == kindForm && looksJSON(body) {
		// curl -d sends application/x-www-form-urlencoded unless told
		// otherwise; a form body cannot start with '{' or '[' (they are
		// not valid in a form key without percent-encoding in practice),
		// so such a body is the JSON its sender meant.
		kind = kindJSON
	}
	if kind == kindForm {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return dst, &reqError{status: http.StatusBadRequest, index: -1,
				msg: "malformed form body: " + err.Error()}
		}
		return parseOne(dispatch.FormToObject(vals), dst)
	}
	body = trimLeftSpace(body)
	body = trimBOM(body)
	if len(body) == 0 {
		return dst, &reqError{status: http.StatusBadRequest, index: -1,
			msg: "empty body: send one JSON object or an array of JSON objects"}
	}
	switch body[0] {
	case '{':
		return parseOne(body, dst)
	case '[':
		return parseArray(body, dst)
	}
	if kind == kindSniff {
		return dst, unsupported(ct)
	}
	return dst, &reqError{status: http.StatusBadRequest, index: -1,
		msg: "body must be one JSON object or an array of JSON objects"}
}

// parseOne validates a body holding one event.
func parseOne(obj []byte, dst []eventlog.Entry) ([]eventlog.Entry, *reqError) {
	model, body, err := dispatch.ParseIngest(obj)
	if err != nil {
		return dst, eventError(0, err)
	}
	return append(dst, eventlog.Entry{Model: model, Body: body}), nil
}

// parseArray validates a body holding an array of events, stopping at the
// first invalid event or at event MaxEvents+1.
func parseArray(body []byte, dst []eventlog.Entry) ([]eventlog.Entry, *reqError) {
	s := arrayScanner{buf: body}
	for {
		elem, err := s.next()
		if err != nil {
			return dst, err
		}
		if elem == nil {
			break
		}
		model, ev, perr := dispatch.ParseIngest(elem)
		if perr != nil {
			return dst, eventError(s.count-1, perr)
		}
		dst = append(dst, eventlog.Entry{Model: model, Body: ev})
	}
	if len(dst) == 0 {
		return dst, &reqError{status: http.StatusBadRequest, index: -1,
			msg: "empty array: send at least one event"}
	}
	return dst, nil
}

// eventError is the 400 for event i failing ParseIngest.
func eventError(i int, err error) *reqError {
	e := &reqError{status: http.StatusBadRequest, index: i,
		msg: "event " + strconv.Itoa(i) + ": " + err.Error()}
	if ie, ok := errors.AsType[*dispatch.IngestError](err); ok {
		e.field = ie.Field
	}
	return e
}

// maxQuoted bounds how much of a client-supplied header an error quotes.
const maxQuoted = 100

func truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return s[:maxQuoted] + "…"
}

// looksJSON reports whether a body's first byte after white space (and a
// byte order mark) opens a JSON object or array.
func looksJSON(b []byte) bool {
	b = trimBOM(trimLeftSpace(b))
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

func trimLeftSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	return b
}

// trimBOM drops a leading UTF-8 byte order mark, which some Windows tools
// write in front of JSON (RFC 8259 lets parsers ignore it).
func trimBOM(b []byte) []byte {
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return trimLeftSpace(b[3:])
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
