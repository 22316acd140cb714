package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
)

// CommandType identifies a command in the first byte of a raft log entry.
type CommandType uint8

// FlagSkippable, set in the type byte, tells a node that does not know the
// command type that it may skip the entry instead of stopping. A proposer
// sets it on commands whose loss on an older node cannot corrupt state (for
// example advisory or statistics commands).
const FlagSkippable byte = 0x80

// Command types. Values are part of the on-disk raft log: never renumber.
const (
	CmdCreateSub    CommandType = 1
	CmdUpdateSub    CommandType = 2
	CmdDeleteSub    CommandType = 3
	CmdSetPaused    CommandType = 4
	CmdCreateToken  CommandType = 5
	CmdRevokeToken  CommandType = 6
	CmdRegisterNode CommandType = 7
	CmdNodeReport   CommandType = 8
	CmdRewindSub    CommandType = 9
	CmdSetHealth    CommandType = 10
	CmdSetDraining  CommandType = 11
	CmdRemoveNode   CommandType = 12
	CmdReassign     CommandType = 13
	CmdSetWaiting   CommandType = 14
	// CmdRestoreState is not skippable: a node that skipped a restore
	// would keep the subscriptions and tokens the others replaced.
	CmdRestoreState CommandType = 15
)

func (t CommandType) String() string {
	switch t {
	case CmdCreateSub:
		return "create-sub"
	case CmdUpdateSub:
		return "update-sub"
	case CmdDeleteSub:
		return "delete-sub"
	case CmdSetPaused:
		return "set-paused"
	case CmdCreateToken:
		return "create-token"
	case CmdRevokeToken:
		return "revoke-token"
	case CmdRegisterNode:
		return "register-node"
	case CmdNodeReport:
		return "node-report"
	case CmdRewindSub:
		return "rewind-sub"
	case CmdSetHealth:
		return "set-health"
	case CmdSetDraining:
		return "set-draining"
	case CmdRemoveNode:
		return "remove-node"
	case CmdReassign:
		return "reassign"
	case CmdSetWaiting:
		return "set-waiting"
	case CmdRestoreState:
		return "restore-state"
	}
	return fmt.Sprintf("command-%d", uint8(t))
}

// ErrUndecodable marks an entry that cannot be decoded; the FSM treats it as
// fatal because skipping it would let replicas diverge.
var ErrUndecodable = errors.New("fsm: undecodable command")

// Command is a payload that can be proposed to raft.
type Command interface {
	Type() CommandType
}

// CreateSub creates a subscription. The proposer fills every field,
// including the generated id and secret and the creation time.
//
// Unique asks for NetSapiens' rule: the create fails with ErrDuplicate when
// an existing subscription has the same model, post-url, reseller, domain
// and user. It is a field of the command, not a rule of the state, so that
// replaying a log written before the rule existed (which may hold such
// duplicates) gives the state it gave then.
//
// MaxPerCreator, when positive, is max-subs-per-token: the create fails
// with ErrLimit when Sub.CreatedBy already created that many.
type CreateSub struct {
	Sub           Subscription `json:"sub"`
	Unique        bool         `json:"unique,omitempty"`
	MaxPerCreator int          `json:"max-per-creator,omitempty"`
}

// UpdateSub replaces the writable fields of a subscription with Spec. When
// ExpectVersion is non-zero the update applies only if the subscription's
// Version still equals it (compare-and-set, so a merge computed by the
// proposer never overwrites a concurrent change).
//
// When Spec changes the secret (a rotation), the old secret is kept as
// PrevSecret until SecretOverlapUntilMs, stamped by the proposer (now +
// secret-overlap); 0 drops it at once.
type UpdateSub struct {
	ID            string  `json:"id"`
	Spec          SubSpec `json:"spec"`
	ExpectVersion uint64  `json:"expect-version,omitempty"`
	ResetPosts    bool    `json:"reset-posts,omitempty"`
	ResetErrors   bool    `json:"reset-errors,omitempty"`
	// Home, when set, is the subscription's home node from now on; a
	// geo "no" subscription is sent by its home node alone, so its owner
	// follows (with a new generation, so reports of the old owner no
	// longer move its cursors or status). The proposer computes it with
	// PinnedHome. A field of the command, not a rule of the state, like
	// CreateSub.Unique: replaying an older log gives the state it gave.
	Home string `json:"home,omitempty"`
	AtMs int64  `json:"at-ms"`

	SecretOverlapUntilMs int64 `json:"secret-overlap-until-ms,omitempty"`
}

// DeleteSub removes a subscription.
type DeleteSub struct {
	ID string `json:"id"`
}

// SetPaused pauses or resumes a subscription.
type SetPaused struct {
	ID     string `json:"id"`
	Paused bool   `json:"paused"`
	AtMs   int64  `json:"at-ms"`
}

// CreateToken stores an API token. Only its hash travels through raft.
type CreateToken struct {
	Token Token `json:"token"`
}

// RevokeToken removes an API token.
type RevokeToken struct {
	ID string `json:"id"`
}

// RegisterNode records a node's identity and addresses. TokenHash, when
// set, is the hash of the node's node-to-node token, stored with it.
type RegisterNode struct {
	Node      Node   `json:"node"`
	TokenHash string `json:"token-hash,omitempty"`
}

func (CreateSub) Type() CommandType    { return CmdCreateSub }
func (UpdateSub) Type() CommandType    { return CmdUpdateSub }
func (DeleteSub) Type() CommandType    { return CmdDeleteSub }
func (SetPaused) Type() CommandType    { return CmdSetPaused }
func (CreateToken) Type() CommandType  { return CmdCreateToken }
func (RevokeToken) Type() CommandType  { return CmdRevokeToken }
func (RegisterNode) Type() CommandType { return CmdRegisterNode }
func (NodeReport) Type() CommandType   { return CmdNodeReport }
func (RewindSub) Type() CommandType    { return CmdRewindSub }
func (SetHealth) Type() CommandType    { return CmdSetHealth }
func (SetDraining) Type() CommandType  { return CmdSetDraining }
func (RemoveNode) Type() CommandType   { return CmdRemoveNode }
func (Reassign) Type() CommandType     { return CmdReassign }
func (SetWaiting) Type() CommandType   { return CmdSetWaiting }

// Encode returns the log entry bytes for c: one type byte, then the JSON
// payload.
func Encode(c Command) ([]byte, error) {
	return encode(byte(c.Type()), c)
}

// EncodeSkippable is Encode with FlagSkippable set.
func EncodeSkippable(c Command) ([]byte, error) {
	return encode(byte(c.Type())|FlagSkippable, c)
}

func encode(head byte, c Command) ([]byte, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %s: %w", c.Type(), err)
	}
	out := make([]byte, 0, len(payload)+1)
	out = append(out, head)
	return append(out, payload...), nil
}

// ErrUnknownSkippable is returned by Decode for an unknown command type that
// carries FlagSkippable: the caller skips the entry.
var ErrUnknownSkippable = errors.New("fsm: unknown skippable command")

// Decode parses a log entry produced by Encode.
func Decode(b []byte) (Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrUndecodable)
	}
	t := CommandType(b[0] &^ FlagSkippable)
	var c Command
	switch t {
	case CmdCreateSub:
		c = &CreateSub{}
	case CmdUpdateSub:
		c = &UpdateSub{}
	case CmdDeleteSub:
		c = &DeleteSub{}
	case CmdSetPaused:
		c = &SetPaused{}
	case CmdCreateToken:
		c = &CreateToken{}
	case CmdRevokeToken:
		c = &RevokeToken{}
	case CmdRegisterNode:
		c = &RegisterNode{}
	case CmdNodeReport:
		c = &NodeReport{}
	case CmdRewindSub:
		c = &RewindSub{}
	case CmdSetHealth:
		c = &SetHealth{}
	case CmdSetDraining:
		c = &SetDraining{}
	case CmdRemoveNode:
		c = &RemoveNode{}
	case CmdReassign:
		c = &Reassign{}
	case CmdSetWaiting:
		c = &SetWaiting{}
	case CmdRestoreState:
		c = &RestoreState{}
	default:
		if b[0]&FlagSkippable != 0 {
			return nil, fmt.Errorf("%w: type %d", ErrUnknownSkippable, uint8(t))
		}
		return nil, fmt.Errorf("%w: unknown type %d", ErrUndecodable, uint8(t))
	}
	if err := json.Unmarshal(b[1:], c); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUndecodable, t, err)
	}
	return c, nil
}
