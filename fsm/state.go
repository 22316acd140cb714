package fsm

import (
	"errors"
	"sort"
)

// Sentinel business errors returned inside a Result. Match with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrConflict = errors.New("changed concurrently")
	// ErrDuplicate: a subscription with the same model, post-url,
	// reseller, domain and user exists (CreateSub.Unique).
	ErrDuplicate = errors.New("a subscription with the same parameters exists")
	// ErrLimit: the creating token owns CreateSub.MaxPerCreator
	// subscriptions already.
	ErrLimit = errors.New("the token owns the most subscriptions it may")
)

// Filter selects events by one property, as in the websocket filter protocol.
type Filter struct {
	Property string `json:"property"`
	Value    string `json:"value"`
}

// SubSpec holds the writable fields of a subscription.
type SubSpec struct {
	Model           string   `json:"model"`
	PostURL         string   `json:"post-url"`
	Reseller        string   `json:"reseller"`
	Domain          string   `json:"domain"`
	User            string   `json:"user"`
	Filters         []Filter `json:"filters,omitempty"`
	GeoSupport      string   `json:"geo-support"`
	PreferredServer string   `json:"preferred-server,omitempty"`
	Encoding        string   `json:"encoding"`
	BatchMax        int      `json:"batch-max"`
	TimeoutMs       int      `json:"timeout-ms,omitempty"`
	Secret          string   `json:"secret"`
	ExpiresMs       int64    `json:"expires-ms,omitempty"`
}

// Delivery statuses of a subscription. Paused is derived by the API from
// Paused; waiting is set by the leader (SetWaiting) while a geo "no"
// subscription's home node cannot send it; the others are reported by the
// sending node.
const (
	StatusPending   = "pending"
	StatusActive    = "active"
	StatusError     = "error"
	StatusPaused    = "paused"
	StatusSuspended = "suspended"
	StatusWaiting   = "waiting"
)

// GeoNo is the subscription-geo-support value of a subscription pinned to
// its home node.
const GeoNo = "no"

// Counters are the cluster-wide delivery counters of a subscription.
type Counters struct {
	Posts       uint64 `json:"posts"`
	Errors      uint64 `json:"errors"`
	Events      uint64 `json:"events"`
	Dropped     uint64 `json:"dropped"`
	Lag         uint64 `json:"lag"`
	LastPostMs  int64  `json:"last-post-ms,omitempty"`
	LastError   string `json:"last-error,omitempty"`
	LastErrorMs int64  `json:"last-error-ms,omitempty"`
}

// Subscription is the replicated record of one subscription.
type Subscription struct {
	ID string `json:"id"`
	SubSpec
	CreatedMs int64  `json:"created-ms"`
	UpdatedMs int64  `json:"updated-ms"`
	HomeNode  string `json:"home-node"`
	// Origin is the node that created the subscription: the home node of
	// a geo "no" one without a preferred server (empty in subscriptions
	// created before it was recorded).
	Origin     string `json:"origin,omitempty"`
	Owner      string `json:"owner"`
	Generation uint64 `json:"generation"`
	Paused     bool   `json:"paused"`
	Status     string `json:"status"`
	// Version is the raft index of the last change to the writable fields.
	Version  uint64   `json:"version"`
	Counters Counters `json:"counters"`
	// StartMs is where delivery starts in a source log that has no cursor
	// yet: the creation time less the clock-skew allowance, or a replay's
	// start.
	StartMs int64 `json:"start-ms"`
	// Cursors say how far the subscription has consumed each source node's
	// log, as committed by its sending node's reports.
	Cursors map[string]Cursor `json:"cursors,omitempty"`
	// FailingSinceMs is when the current streak of failed POSTs began (0
	// when the last POST succeeded), so suspend-after survives failover.
	FailingSinceMs int64 `json:"failing-since-ms,omitempty"`
	// PrevSecret is the secret before the last rotation; POSTs carry its
	// signature too until PrevSecretUntilMs (secret-overlap). It is kept
	// after that time (apply is pure); the sender compares.
	PrevSecret        string `json:"prev-secret,omitempty"`
	PrevSecretUntilMs int64  `json:"prev-secret-until-ms,omitempty"`
	// CreatedBy is the id of the token that created the subscription
	// (max-subs-per-token counts by it).
	CreatedBy string `json:"created-by,omitempty"`
}

// Cursor is how far a subscription has consumed one source node's log:
// every event up to Seq of that log incarnation is delivered or passed over.
type Cursor struct {
	Node        string `json:"node"`
	Incarnation string `json:"incarnation"`
	Seq         uint64 `json:"seq"`
}

// Token roles.
const (
	RoleSuper    = "super"
	RoleReseller = "reseller"
	RoleDomain   = "domain"
	RoleUser     = "user"
	RoleIngest   = "ingest"
	RoleNode     = "node"
)

// Token is an API token. The token string itself is never stored: Hash is
// the hex SHA-256 of it.
type Token struct {
	ID        string `json:"id"`
	Name      string `json:"name,omitempty"`
	Role      string `json:"role"`
	Reseller  string `json:"reseller,omitempty"`
	Domain    string `json:"domain,omitempty"`
	User      string `json:"user,omitempty"`
	Hash      string `json:"hash"`
	CreatedMs int64  `json:"created-ms"`
}

// Node is a cluster member as the replicated state knows it.
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft-addr"`
	HTTPAddr string `json:"http-addr"`
	Witness  bool   `json:"witness,omitempty"`
	JoinedMs int64  `json:"joined-ms"`
	// LastReportSeq and LastReportMs are from the node's last committed
	// report (a retried report with an old sequence number is ignored).
	LastReportSeq uint64 `json:"last-report-seq,omitempty"`
	LastReportMs  int64  `json:"last-report-ms,omitempty"`
	// Health is decided by the leader's reconciler with the leader's
	// clock: HealthUp since UpSinceMs, or HealthDown.
	Health    string `json:"health,omitempty"`
	UpSinceMs int64  `json:"up-since-ms,omitempty"`
	Draining  bool   `json:"draining,omitempty"`
}

// Node health values.
const (
	HealthUp   = "up"
	HealthDown = "down"
)

// State is the whole replicated state. It is not safe for concurrent use;
// FSM guards it.
type State struct {
	Subs   map[string]*Subscription
	Tokens map[string]*Token
	Nodes  map[string]*Node

	tokenByHash map[string]string
}

// NewState returns an empty state.
func NewState() *State {
	return &State{
		Subs:        map[string]*Subscription{},
		Tokens:      map[string]*Token{},
		Nodes:       map[string]*Node{},
		tokenByHash: map[string]string{},
	}
}

// TokenByHash finds a token by the hash of its secret.
func (s *State) TokenByHash(hash string) (*Token, bool) {
	id, ok := s.tokenByHash[hash]
	if !ok {
		return nil, false
	}
	t, ok := s.Tokens[id]
	return t, ok
}

// SortedSubs returns the subscriptions ordered by id.
func (s *State) SortedSubs() []*Subscription {
	out := make([]*Subscription, 0, len(s.Subs))
	for _, sub := range s.Subs {
		out = append(out, sub)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// sameParameters returns the subscription (the one with the smallest id,
// so the answer does not depend on map order) whose model, post-url,
// reseller, domain and user equal spec's, or nil.
func (s *State) sameParameters(spec *SubSpec) *Subscription {
	var found *Subscription
	for _, sub := range s.Subs {
		if sub.Model == spec.Model && sub.PostURL == spec.PostURL && sub.Reseller == spec.Reseller &&
			sub.Domain == spec.Domain && sub.User == spec.User && (found == nil || sub.ID < found.ID) {
			found = sub
		}
	}
	return found
}

// CountCreatedBy returns how many subscriptions the token tokenID created.
func (s *State) CountCreatedBy(tokenID string) int {
	n := 0
	for _, sub := range s.Subs {
		if sub.CreatedBy == tokenID {
			n++
		}
	}
	return n
}

// SortedTokens returns the tokens ordered by id.
func (s *State) SortedTokens() []*Token {
	out := make([]*Token, 0, len(s.Tokens))
	for _, t := range s.Tokens {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Clone returns a deep copy of a subscription.
func (sub *Subscription) Clone() *Subscription {
	c := *sub
	c.Filters = append([]Filter(nil), sub.Filters...)
	if sub.Cursors != nil {
		c.Cursors = make(map[string]Cursor, len(sub.Cursors))
		for k, v := range sub.Cursors {
			c.Cursors[k] = v
		}
	}
	return &c
}

// errorCodes name the sentinel errors on the wire, for results of writes
// forwarded from a follower to the leader.
var errorCodes = map[string]error{"not-found": ErrNotFound, "exists": ErrExists, "conflict": ErrConflict, "duplicate": ErrDuplicate, "limit": ErrLimit}

// ErrorCode returns the wire name of a sentinel error ("" for nil).
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	for code, e := range errorCodes {
		if errors.Is(err, e) {
			return code
		}
	}
	return "error: " + err.Error()
}

// ErrorFromCode is the inverse of ErrorCode.
func ErrorFromCode(code string) error {
	if code == "" {
		return nil
	}
	if e, ok := errorCodes[code]; ok {
		return e
	}
	return errors.New(code)
}
