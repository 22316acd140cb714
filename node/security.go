package node

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/node/tlsnet"
)

// clusterTLS is the TLS material of node-to-node connections: nil when
// the HTTP server has no certificate (plain HTTP and TCP between nodes).
func (n *Node) clusterTLS() *tlsnet.Store { return n.certs }

// scheme is the scheme of node-to-node HTTP calls.
func (n *Node) scheme() string {
	if n.certs != nil {
		return "https"
	}
	return "http"
}

// loadJoinToken returns the join-token setting, else the data dir's
// join-token file, else "".
func loadJoinToken(cfg Config) (string, error) {
	if cfg.JoinToken != "" {
		return cfg.JoinToken, nil
	}
	path := filepath.Join(cfg.DataDir, JoinTokenFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrConfig, path)
	}
	return tok, nil
}

// keepJoinToken writes the join token this node joined with to its data
// dir when the file is missing, so that it can check joins when it leads
// (and rejoin after a restart without the setting).
func (n *Node) keepJoinToken() {
	path := filepath.Join(n.cfg.DataDir, JoinTokenFile)
	if _, err := os.Stat(path); err == nil || n.joinToken == "" {
		return
	}
	if err := writeFileAtomic(path, []byte(n.joinToken+"\n")); err != nil {
		n.log.Warn("could not keep the join token in the data dir", "file", JoinTokenFile, "err", err)
	}
}

// JoinToken is the cluster's join token as this node knows it (for the
// --dev banner); "" when it knows none.
func (n *Node) JoinToken() string { return n.joinToken }

// equalSecret compares two secrets in constant time (of their hashes, so
// the length of the expected one does not leak either).
func equalSecret(presented, expected string) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(expected))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && expected != ""
}

// checkJoinToken is the join token check of Join.
func (n *Node) checkJoinToken(presented string) error {
	if n.joinToken == "" {
		return fmt.Errorf("%w (node %s has no join token to check it against)", httpapi.ErrJoinRefused, n.id)
	}
	if !equalSecret(presented, n.joinToken) {
		return httpapi.ErrJoinRefused
	}
	return nil
}

// CheckJoinToken is the early check of a join request (before its body is
// read): a node that knows the join token refuses a wrong one; one that
// does not leaves the decision to the leader.
func (n *Node) CheckJoinToken(presented string) error {
	if n.joinToken == "" {
		return nil
	}
	return n.checkJoinToken(presented)
}

// Reload reads tls-cert, tls-key and cluster-ca again (SIGHUP). New
// connections use the new files; on error the old ones stay in use.
func (n *Node) Reload() error {
	if n.certs == nil {
		return nil
	}
	if err := n.certs.Reload(); err != nil {
		n.log.Error("reloading the certificates failed; the previous ones stay in use", "err", err)
		return err
	}
	n.log.Info("certificates reloaded", "not-after", n.certs.NotAfter().UTC().Format(time.RFC3339))
	return nil
}

// readTimeout cuts off a request whose body has not arrived within d of
// the handler's start (the headers are bounded by the server's
// ReadHeaderTimeout): the connection's read deadline is set, and cleared
// once the body has been read, so that long streams (websockets, a
// peer's log) are not cut.
func readTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body == nil || r.Body == http.NoBody {
			_ = rc.SetReadDeadline(time.Time{})
			h.ServeHTTP(w, r)
			return
		}
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody clears the read deadline when the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
