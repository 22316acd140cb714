package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/fsm"
)

// Limits and defaults of subscription fields (DESIGN.md, "Subscriptions").
const (
	DefaultBatchMax  = 100
	MaxBatchMax      = 1000
	DefaultTimeoutMs = 15000 // whole request, 15 s
	MinTimeoutMs     = 100
	MaxTimeoutMs     = 300000 // 5 min
	MaxFilters       = 100
	// MaxFilterBytes bounds one filter: its property and value together.
	MaxFilterBytes    = 1024
	MaxScopeLen       = 255
	maxPostURLLen     = 2048
	creationSkewMs    = 1000 // events up to 1 s older than creation are included
	encodingJSONArray = "json-array"
	encodingJSON      = "json"
	encodingForm      = "form"
	geoYes            = "yes"
	geoNo             = "no"
)

var (
	subIDPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	modelPattern  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	nodeIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// SubView is a subscription as the API shows it (NetSapiens v2 names).
type SubView struct {
	ID                  string       `json:"id"`
	Model               string       `json:"model"`
	PostURL             string       `json:"post-url"`
	Reseller            string       `json:"reseller"`
	Domain              string       `json:"domain"`
	User                string       `json:"user"`
	Filters             []fsm.Filter `json:"filters"`
	GeoSupport          string       `json:"subscription-geo-support"`
	PreferredServer     string       `json:"preferred-server"`
	CurrentActiveServer string       `json:"current-active-server"`
	HomeServer          string       `json:"home-server"`
	Encoding            string       `json:"encoding"`
	BatchMax            int          `json:"batch-max"`
	TimeoutMs           int          `json:"timeout-ms"`
	Secret              string       `json:"secret,omitempty"`
	Created             string       `json:"subscription-creation-datetime"`
	Expires             string       `json:"subscription-expires-datetime,omitempty"`
	Status              string       `json:"status"`
	PostsCount          uint64       `json:"posts-count"`
	ErrorCount          uint64       `json:"error-count"`
	EventsCount         uint64       `json:"events-count"`
	DroppedCount        uint64       `json:"dropped-count"`
	Lag                 uint64       `json:"lag"`
	LastPost            string       `json:"last-post-datetime,omitempty"`
	LastError           string       `json:"last-error,omitempty"`
	LastErrorTime       string       `json:"last-error-datetime,omitempty"`
}

// Datetime layouts: /v1 answers RFC 3339 (with milliseconds when there are
// any); the NetSapiens paths answer NSDatetime, in UTC. Both paths accept
// both forms.
const (
	v1Datetime = time.RFC3339Nano
	// NSDatetime is NetSapiens' datetime layout, always UTC.
	NSDatetime = "2006-01-02 15:04:05"
)

func msTime(ms int64) string { return fmtMs(ms, v1Datetime) }

// fmtMs renders unix milliseconds in layout, UTC; "" for 0.
func fmtMs(ms int64, layout string) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(layout)
}

// parseDatetime reads a datetime in either form an API path accepts:
// RFC 3339 ("2043-10-04T17:16:36Z") or NetSapiens' "2043-10-04 17:16:36"
// (UTC).
func parseDatetime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if t, err := time.ParseInLocation(NSDatetime, s, time.UTC); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// datetimeHint is the error text of a datetime neither form reads.
const datetimeHint = `must be a time like "2027-01-02T15:04:05Z" (RFC 3339) or "2027-01-02 15:04:05" (UTC)`

// viewOf renders a subscription for /v1; the secret is left out.
func viewOf(s *fsm.Subscription) SubView { return viewIn(s, v1Datetime) }

// viewIn renders a subscription with datetimes in layout.
func viewIn(s *fsm.Subscription, layout string) SubView {
	ms := func(v int64) string { return fmtMs(v, layout) }
	v := SubView{
		ID: s.ID, Model: s.Model, PostURL: s.PostURL,
		Reseller: s.Reseller, Domain: s.Domain, User: s.User,
		Filters:    append([]fsm.Filter{}, s.Filters...),
		GeoSupport: s.GeoSupport, PreferredServer: s.PreferredServer,
		CurrentActiveServer: s.Owner, HomeServer: s.HomeNode,
		Encoding: s.Encoding, BatchMax: s.BatchMax, TimeoutMs: s.TimeoutMs,
		Created: ms(s.CreatedMs), Expires: ms(s.ExpiresMs),
		Status:     s.Status,
		PostsCount: s.Counters.Posts, ErrorCount: s.Counters.Errors,
		EventsCount: s.Counters.Events, DroppedCount: s.Counters.Dropped, Lag: s.Counters.Lag,
		LastPost: ms(s.Counters.LastPostMs), LastError: s.Counters.LastError,
		LastErrorTime: ms(s.Counters.LastErrorMs),
	}
	v.Status = viewStatus(s)
	return v
}

// viewStatus is the status the API shows: paused wins over the reported one.
func viewStatus(s *fsm.Subscription) string {
	if s.Paused {
		return fsm.StatusPaused
	}
	return s.Status
}

// fieldError is a 400 naming the offending field.
type fieldError struct {
	Field string
	Msg   string
}

func (e *fieldError) Error() string { return e.Field + ": " + e.Msg }

func badField(field, format string, args ...any) *fieldError {
	return &fieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Field classes of the subscription object.
var (
	writableFields = map[string]bool{
		"model": true, "post-url": true, "reseller": true, "domain": true, "user": true,
		"filters": true, "subscription-geo-support": true, "preferred-server": true,
		"encoding": true, "batch-max": true, "timeout-ms": true, "secret": true,
		"subscription-expires-datetime": true,
	}
	readOnlyFields = map[string]bool{
		"current-active-server": true, "home-server": true, "subscription-creation-datetime": true,
		"status": true, "posts-count": true, "error-count": true, "events-count": true,
		"dropped-count": true, "lag": true, "last-post-datetime": true, "last-error": true,
		"last-error-datetime": true,
	}
)

// subInput is a parsed request body: the raw fields it carried.
type subInput struct {
	raw map[string]json.RawMessage
	// alias maps a field to the name the request used for it
	// (server_preferred on the NetSapiens paths), so errors name what the
	// client sent.
	alias map[string]string
}

// NetSapiens request fields of the /ns-api/v2 paths (DESIGN.md "NetSapiens
// v2 drop-in").
const (
	// nsUserScope is accepted and ignored: the token decides the scope.
	nsUserScope = "user-scope"
	// nsServerPreferred is an alias of preferred-server.
	nsServerPreferred = "server_preferred"
)

// parseSubInput parses a subscription body. ns accepts the NetSapiens
// request fields too: user-scope is dropped, server_preferred becomes
// preferred-server.
func parseSubInput(body []byte, ns bool) (*subInput, *fieldError) {
	in, fe := parseRawInput(body)
	if fe != nil || !ns {
		if fe == nil {
			fe = in.unknownField()
		}
		return in, fe
	}
	delete(in.raw, nsUserScope)
	if v, ok := in.raw[nsServerPreferred]; ok {
		if cur, both := in.raw["preferred-server"]; both && !bytes.Equal(bytes.TrimSpace(cur), bytes.TrimSpace(v)) {
			return nil, badField(nsServerPreferred, "differs from preferred-server (send one of them)")
		}
		delete(in.raw, nsServerPreferred)
		in.raw["preferred-server"] = v
		in.alias = map[string]string{"preferred-server": nsServerPreferred}
	}
	return in, in.unknownField()
}

// field names f as the request did.
func (in *subInput) field(f string) string {
	if in != nil && in.alias[f] != "" {
		return in.alias[f]
	}
	return f
}

// named returns fe with its field named as the request did.
func (in *subInput) named(fe *fieldError) *fieldError {
	if fe == nil || in.field(fe.Field) == fe.Field {
		return fe
	}
	return &fieldError{Field: in.field(fe.Field), Msg: fe.Msg}
}

// unknownField reports the first field (in name order) the subscription
// object does not have.
func (in *subInput) unknownField() *fieldError {
	var unknown []string
	for k := range in.raw {
		if k != "id" && !writableFields[k] && !readOnlyFields[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return badField(unknown[0], "unknown field")
}

// pinDomain makes the body's domain the one of the path
// (/ns-api/v2/domains/{domain}/...): a body that names another domain is
// refused rather than silently moved, since the client meant one of them.
func (in *subInput) pinDomain(domain string) *fieldError {
	if v, ok := in.raw["domain"]; ok {
		var d string
		if err := json.Unmarshal(v, &d); err != nil {
			return badField("domain", "must be a string")
		}
		if d != domain {
			return badField("domain", "is %q but the path names domain %q", d, domain)
		}
	}
	b, _ := json.Marshal(domain) // a string always marshals
	in.raw["domain"] = b
	return nil
}

func parseRawInput(body []byte) (*subInput, *fieldError) {
	if err := checkJSONText(body); err != nil {
		var dk *dupKeyError
		if errors.As(err, &dk) {
			return nil, badField(dk.key, "is given twice")
		}
		return nil, badField("", "%v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, badField("", "body is not a JSON object: %v", err)
	}
	if raw == nil {
		return nil, badField("", "body is not a JSON object")
	}
	// Only white space may follow (dec.More misses a stray ']' or '}').
	if _, err := dec.Token(); err != io.EOF {
		return nil, badField("", "body has data after the JSON object")
	}
	return &subInput{raw: raw}, nil
}

func (in *subInput) present() map[string]bool {
	out := make(map[string]bool, len(in.raw))
	for k := range in.raw {
		out[k] = true
	}
	return out
}

func (in *subInput) str(f string, dst *string) *fieldError {
	v, ok := in.raw[f]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return badField(f, "must be a string")
	}
	return nil
}

func (in *subInput) int(f string, dst *int) *fieldError {
	v, ok := in.raw[f]
	if !ok {
		return nil
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
	if err != nil {
		return badField(f, "must be a whole number")
	}
	*dst = n
	return nil
}

func (in *subInput) uint(f string) (uint64, bool, *fieldError) {
	v, ok := in.raw[f]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
	if err != nil {
		return 0, true, badField(f, "must be a whole number")
	}
	return n, true, nil
}

// mergeInto writes the writable fields the input carries into spec.
func (in *subInput) mergeInto(spec *fsm.SubSpec) *fieldError {
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"model", &spec.Model}, {"post-url", &spec.PostURL}, {"reseller", &spec.Reseller},
		{"domain", &spec.Domain}, {"user", &spec.User}, {"subscription-geo-support", &spec.GeoSupport},
		{"preferred-server", &spec.PreferredServer}, {"encoding", &spec.Encoding}, {"secret", &spec.Secret},
	} {
		if err := in.str(f.name, f.dst); err != nil {
			return err
		}
	}
	if v, ok := in.raw["secret"]; ok && (spec.Secret == "" || string(bytes.TrimSpace(v)) == "null") {
		return badField("secret", "must not be empty or null (leave it out to keep the current one, or rotate it with POST /v1/subscriptions/{id}/secret/rotate)")
	}
	if err := in.int("batch-max", &spec.BatchMax); err != nil {
		return err
	}
	if err := in.int("timeout-ms", &spec.TimeoutMs); err != nil {
		return err
	}
	if v, ok := in.raw["filters"]; ok {
		filters, err := parseFilters(v)
		if err != nil {
			return err
		}
		spec.Filters = filters
	}
	if v, ok := in.raw["subscription-expires-datetime"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil && string(v) != "null" {
			return badField("subscription-expires-datetime", "%s", datetimeHint)
		}
		spec.ExpiresMs = 0
		if s != "" {
			t, ok := parseDatetime(s)
			if !ok {
				return badField("subscription-expires-datetime", "%s", datetimeHint)
			}
			spec.ExpiresMs = t.UnixMilli()
		}
	}
	return nil
}

func parseFilters(v json.RawMessage) ([]fsm.Filter, *fieldError) {
	if string(v) == "null" {
		return nil, nil
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		return nil, badField("filters", `must be a list of {"property":P,"value":V}`)
	}
	if len(items) > MaxFilters {
		return nil, badField("filters", "at most %d filters (%d given)", MaxFilters, len(items))
	}
	out := make([]fsm.Filter, 0, len(items))
	for i, it := range items {
		var f fsm.Filter
		for k := range it {
			if k != "property" && k != "value" {
				return nil, badField("filters", "filter %d: unknown field %q", i, k)
			}
		}
		if err := json.Unmarshal(it["property"], &f.Property); err != nil || f.Property == "" {
			return nil, badField("filters", "filter %d: property must be a non-empty string", i)
		}
		// json.Unmarshal takes null for a string without error: refuse it.
		if err := json.Unmarshal(it["value"], &f.Value); err != nil || string(bytes.TrimSpace(it["value"])) == "null" {
			return nil, badField("filters", "filter %d: value must be a string", i)
		}
		if len(f.Property)+len(f.Value) > MaxFilterBytes {
			return nil, badField("filters", "filter %d: property and value are longer than %d bytes together", i, MaxFilterBytes)
		}
		if !printable(f.Property) || !printable(f.Value) {
			return nil, badField("filters", "filter %d: %s", i, notPrintable)
		}
		out = append(out, f)
	}
	return out, nil
}

// normalize fills defaults and validates a complete spec.
func normalize(spec *fsm.SubSpec, nowMs int64, creating bool) *fieldError {
	if spec.Model == "" {
		return badField("model", "is required")
	}
	if spec.Model != Wildcard && !modelPattern.MatchString(spec.Model) {
		return badField("model", `must be "*" or a lowercase identifier [a-z][a-z0-9_]{0,63}`)
	}
	if err := checkPostURL(spec.PostURL); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"reseller", &spec.Reseller}, {"domain", &spec.Domain}, {"user", &spec.User}} {
		if *f.v == "" {
			*f.v = Wildcard
		}
		if len(*f.v) > MaxScopeLen || !printable(*f.v) {
			return badField(f.name, "must be at most %d printable characters", MaxScopeLen)
		}
	}
	switch spec.GeoSupport {
	case "":
		spec.GeoSupport = geoYes
	case geoYes, geoNo:
	default:
		return badField("subscription-geo-support", `must be "yes" or "no"`)
	}
	if spec.PreferredServer != "" && !nodeIDPattern.MatchString(spec.PreferredServer) {
		return badField("preferred-server", "must be a node id [A-Za-z0-9._-]{1,64}")
	}
	switch spec.Encoding {
	case "":
		spec.Encoding = encodingJSONArray
	case encodingJSONArray, encodingJSON, encodingForm:
	default:
		return badField("encoding", `must be "json-array", "json" or "form"`)
	}
	switch {
	case spec.BatchMax == 0:
		spec.BatchMax = DefaultBatchMax
	case spec.BatchMax < 1 || spec.BatchMax > MaxBatchMax:
		return badField("batch-max", "must be between 1 and %d", MaxBatchMax)
	}
	switch {
	case spec.TimeoutMs == 0:
		spec.TimeoutMs = DefaultTimeoutMs
	case spec.TimeoutMs < MinTimeoutMs || spec.TimeoutMs > MaxTimeoutMs:
		return badField("timeout-ms", "must be between %d and %d", MinTimeoutMs, MaxTimeoutMs)
	}
	if spec.Secret != "" {
		if err := checkSecret(spec.Secret); err != nil {
			return err
		}
	}
	if creating && spec.ExpiresMs != 0 && spec.ExpiresMs <= nowMs {
		return badField("subscription-expires-datetime", "is in the past")
	}
	if len(spec.Filters) > MaxFilters {
		return badField("filters", "at most %d filters (%d given)", MaxFilters, len(spec.Filters))
	}
	for i, f := range spec.Filters {
		if f.Property == "" {
			return badField("filters", "filter %d: property must be a non-empty string", i)
		}
		if len(f.Property)+len(f.Value) > MaxFilterBytes {
			return badField("filters", "filter %d: property and value are longer than %d bytes together", i, MaxFilterBytes)
		}
		if !printable(f.Property) || !printable(f.Value) {
			return badField("filters", "filter %d: %s", i, notPrintable)
		}
	}
	return nil
}

func checkPostURL(s string) *fieldError {
	if s == "" {
		return badField("post-url", "is required")
	}
	if len(s) > maxPostURLLen {
		return badField("post-url", "is longer than %d characters", maxPostURLLen)
	}
	if !printable(s) {
		return badField("post-url", "%s", notPrintable)
	}
	u, err := url.Parse(s)
	if err != nil {
		return badField("post-url", "is not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return badField("post-url", "must be an http or https URL")
	}
	if u.Hostname() == "" {
		return badField("post-url", "has no host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return badField("post-url", "has an invalid port")
		}
	}
	return nil
}

// checkSecret applies Standard Webhooks' rule (dispatch/webhook, which
// signs with it): whsec_ and the base64 of 24 to 64 bytes. The error
// never quotes the secret.
func checkSecret(s string) *fieldError {
	if err := webhook.ValidateSecret(s); err != nil {
		return badField("secret", "must be whsec_ and the base64 of %d to %d bytes", webhook.MinSecretBytes, webhook.MaxSecretBytes)
	}
	return nil
}

// NewSecret returns a fresh signing secret (webhook.NewSecret: whsec_ and
// the base64 of 32 random bytes).
func NewSecret() string { return webhook.NewSecret() }
