package node

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/hookswitch/hookswitch/node/tlsnet"
)

// TestRaftTransportWithoutPipelining: raft's pipelined replication can
// deadlock on a lossy link (its decoder stops on a failed response while
// the sender waits for a slot), stalling replication and raft's shutdown.
// The node's transport must never hand out a pipeline.
func TestRaftTransportWithoutPipelining(t *testing.T) {
	stream, err := tlsnet.NewStreamLayer("127.0.0.1:0", nil, nil, tlsnet.Dialer("127.0.0.1:0", time.Second), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	tr := newRaftTransport(stream)
	defer tr.Close()
	if p, err := tr.AppendEntriesPipeline("peer", raft.ServerAddress(stream.Addr().String())); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("AppendEntriesPipeline: %v, want ErrPipelineReplicationNotSupported (pipelining off)", err)
	}
}
