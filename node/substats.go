package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/stats"
	"github.com/hookswitch/hookswitch/fsm"
	"github.com/hookswitch/hookswitch/httpapi"
)

// subStatsPath is the node-to-node endpoint that answers this node's own
// per-minute counts of a subscription; {id} is the subscription id.
const subStatsPath = "/internal/v1/subscriptions/:id/stats"

// subStatsTimeout bounds asking the owner for its counts: the dashboard
// refreshes every few seconds and would rather show a note than wait.
const subStatsTimeout = 3 * time.Second

// SubStats implements httpapi.SubStats: the per-minute counts are kept by
// the node that sends the subscription, so a request for one that another
// node sends is forwarded to that node (with this node's node token, as
// forwarded writes are). If the owner cannot be asked, the answer is this
// node's own counts with a note.
func (n *Node) SubStats(ctx context.Context, sub *fsm.Subscription) httpapi.StatsView {
	owner := sub.Owner
	if owner == "" || owner == n.id {
		return n.localSubStats(sub.ID)
	}
	var addr string
	n.fsm.Read(func(st *fsm.State) {
		if nd, ok := st.Nodes[owner]; ok {
			addr = nd.HTTPAddr
		}
	})
	return n.ownerSubStats(ctx, sub.ID, owner, addr)
}

// ownerSubStats asks the owner at addr for its counts of sub id; if that
// fails, it returns this node's own with a note.
func (n *Node) ownerSubStats(ctx context.Context, id, owner, addr string) httpapi.StatsView {
	v, err := n.remoteSubStats(ctx, addr, id)
	if err != nil {
		n.log.Warn("asking the owner for subscription statistics failed", "sub", id, "owner", owner, "err", err)
		local := n.localSubStats(id)
		local.Note = "its sender " + owner + " could not be asked; these are this node's counts"
		return local
	}
	return v
}

func (n *Node) localSubStats(id string) httpapi.StatsView {
	return httpapi.StatsView{ID: id, Node: n.id, Minutes: n.subStats.Last(id)}
}

func (n *Node) remoteSubStats(ctx context.Context, addr, id string) (httpapi.StatsView, error) {
	if addr == "" {
		return httpapi.StatsView{}, fmt.Errorf("owner has no known address")
	}
	scheme := "http"
	if n.cfg.TLSCert != "" {
		scheme = "https"
	}
	ctx, cancel := context.WithTimeout(ctx, subStatsTimeout)
	defer cancel()
	u := scheme + "://" + addr + "/internal/v1/subscriptions/" + url.PathEscape(id) + "/stats"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return httpapi.StatsView{}, err
	}
	req.Header.Set("Authorization", "Bearer "+n.nodeToken)
	resp, err := n.forwarder.Do(req)
	if err != nil {
		return httpapi.StatsView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpapi.StatsView{}, fmt.Errorf("owner answered %s", resp.Status)
	}
	var v httpapi.StatsView
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return httpapi.StatsView{}, fmt.Errorf("owner's answer: %w", err)
	}
	if len(v.Minutes) != stats.Window {
		return httpapi.StatsView{}, fmt.Errorf("owner's answer has %d minutes, want %d", len(v.Minutes), stats.Window)
	}
	return v, nil
}

// internalSubStats serves subStatsPath: this node's own counts, never
// forwarded again (node tokens only; MountInternal checks).
func (n *Node) internalSubStats() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/internal/v1/subscriptions/")
		id, ok2 := strings.CutSuffix(id, "/stats")
		w.Header().Set("Content-Type", "application/json")
		if !ok || !ok2 || id == "" || strings.Contains(id, "/") {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad subscription id"})
			return
		}
		_ = json.NewEncoder(w).Encode(n.localSubStats(id))
	})
}
