package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// errRetry marks a failure after which Apply tries again (no leader yet,
// leadership moved while the write was in flight).
var errRetry = errors.New("retry")

// ErrStopped is returned by Apply once the node is shutting down.
var ErrStopped = errors.New("node is stopping")

// ErrNoCluster: a node with no raft state was started with neither
// bootstrap nor join and has not been added to a cluster yet (Ready says
// so until `hookswitch join` adds it).
var ErrNoCluster = errors.New("this node is in no cluster yet (neither --bootstrap nor --join was set)")

// Apply implements httpapi.Backend: the command is committed through raft,
// on this node when it leads, else forwarded to the leader. It waits through
// elections until ctx ends.
func (n *Node) Apply(ctx context.Context, c fsm.Command) (fsm.Result, error) {
	data, err := fsm.Encode(c)
	if err != nil {
		return fsm.Result{}, err
	}
	return n.applyData(ctx, data)
}

// applySkippable is Apply for advisory commands (fsm.EncodeSkippable): a
// node that does not know the command skips it. A business error in the
// result is returned as the error.
func (n *Node) applySkippable(ctx context.Context, c fsm.Command) error {
	data, err := fsm.EncodeSkippable(c)
	if err != nil {
		return err
	}
	res, err := n.applyData(ctx, data)
	if err != nil {
		return err
	}
	return res.Err
}

func (n *Node) applyData(ctx context.Context, data []byte) (fsm.Result, error) {
	for {
		res, err := n.applyOnce(ctx, data)
		if !errors.Is(err, errRetry) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return fsm.Result{}, fmt.Errorf("waiting for a leader: %w (%v)", ctx.Err(), err)
		case <-n.ctx.Done():
			return fsm.Result{}, ErrStopped
		case <-time.After(leaderWaitPoll):
		}
	}
}

func (n *Node) applyOnce(ctx context.Context, data []byte) (fsm.Result, error) {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(data)
	}
	_, leaderID := n.raft.LeaderWithID()
	if leaderID == "" {
		return fsm.Result{}, fmt.Errorf("%w: no leader", errRetry)
	}
	if leaderID == raft.ServerID(n.id) {
		return fsm.Result{}, fmt.Errorf("%w: leadership changing", errRetry)
	}
	var httpAddr string
	n.fsm.Read(func(st *fsm.State) {
		if nd, ok := st.Nodes[string(leaderID)]; ok {
			httpAddr = nd.HTTPAddr
		}
	})
	if httpAddr == "" {
		return fsm.Result{}, fmt.Errorf("%w: leader %s has no known HTTP address yet", errRetry, leaderID)
	}
	return n.forward(ctx, httpAddr, data)
}

func (n *Node) applyLocal(data []byte) (fsm.Result, error) {
	f := n.raft.Apply(data, raftApplyTimeout)
	// raft may never answer a future that was queued when it shut down:
	// wait for it in a goroutine of its own, and give up when the node
	// stops (the goroutine ends with the process then).
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	var err error
	select {
	case err = <-done:
	case <-n.ctx.Done():
		return fsm.Result{}, ErrStopped
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return fsm.Result{}, fmt.Errorf("%w: %v", errRetry, err)
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			return fsm.Result{}, ErrStopped
		}
		return fsm.Result{}, err
	}
	res, ok := f.Response().(fsm.Result)
	if !ok {
		// A skipped entry (unknown skippable type) has no result.
		return fsm.Result{}, nil
	}
	return res, nil
}

// forward sends an encoded command to the leader's internal apply endpoint.
func (n *Node) forward(ctx context.Context, httpAddr string, data []byte) (fsm.Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.scheme()+"://"+httpAddr+"/internal/v1/apply", bytes.NewReader(data))
	if err != nil {
		return fsm.Result{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.nodeToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := n.forwarder.Do(req)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("%w: forward to leader: %v", errRetry, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fsm.Result{}, fmt.Errorf("%w: forward to leader: %v", errRetry, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var res fsm.Result
		if err := json.Unmarshal(body, &res); err != nil {
			return fsm.Result{}, fmt.Errorf("forward to leader: bad answer: %w", err)
		}
		return res, nil
	case http.StatusServiceUnavailable:
		return fsm.Result{}, fmt.Errorf("%w: leader answered %s", errRetry, strings.TrimSpace(string(body)))
	}
	return fsm.Result{}, fmt.Errorf("forward to leader: %s: %s", resp.Status, strings.TrimSpace(string(body)))
}

// ApplyEncoded implements httpapi.Internal: a write forwarded by another
// node. It is applied only here, on the leader, never forwarded again.
func (n *Node) ApplyEncoded(ctx context.Context, data []byte) (fsm.Result, error) {
	if _, err := fsm.Decode(data); err != nil && !errors.Is(err, fsm.ErrUnknownSkippable) {
		return fsm.Result{}, err
	}
	if n.raft.State() != raft.Leader {
		return fsm.Result{}, httpapi.ErrNotLeader
	}
	res, err := n.applyLocal(data)
	if errors.Is(err, errRetry) {
		return res, fmt.Errorf("%w: %v", httpapi.ErrNotLeader, err)
	}
	return res, err
}
