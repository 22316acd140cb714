package integration

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hookswitch/hookswitch/dispatch/webhook"
	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
	"github.com/hookswitch/hookswitch/node"
)

// TestNoSecretInLogsErrorsOrMetrics runs a 3-node cluster, creates tokens
// and subscriptions with secrets, rotates secrets (API and CLI, through
// followers), ingests with ?authkey=, provokes error answers that carry a
// secret in the request, joins (the cluster's own joins, and a wrong join
// token), delivers through a rotation (every POST carries both
// signatures), and then looks for every token and secret it made in every
// node's log, every error body it got and every node's /metrics.
func TestNoSecretInLogsErrorsOrMetrics(t *testing.T) {
	cl := startCluster(t, 3)
	n1, n2, n3 := cl.Nodes[0], cl.Nodes[1], cl.Nodes[2]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	secrets := map[string]string{"root token": cl.Root, "join token": cl.JoinToken()}
	for _, nd := range cl.Nodes {
		b, err := os.ReadFile(filepath.Join(nd.DataDir, node.NodeTokenFile))
		if err != nil {
			t.Fatalf("%s: node token: %v", nd.ID, err)
		}
		secrets[nd.ID+" node token"] = strings.TrimSpace(string(b))
	}
	var errBodies []string
	// call makes a raw request and keeps the body of an error answer.
	call := func(nd *harness.Node, method, path, token string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, nd.BaseURL()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := nd.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			errBodies = append(errBodies, string(b)) // the body alone: the path may carry ?authkey=
		}
		return resp.StatusCode, string(b)
	}
	keep := func(err error) {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) {
			t.Fatalf("want an API error, got %v", err)
		}
		errBodies = append(errBodies, e.Error())
	}

	// Tokens, created through a follower.
	root2 := client.New(n2.BaseURL(), cl.Root)
	for _, req := range []httpapi.TokenRequest{
		{Role: "domain", Domain: "one.example", Name: "tenant"},
		{Role: "ingest", Name: "pbx"},
		{Role: "reseller", Reseller: "R1"},
	} {
		v, err := root2.CreateToken(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		secrets[req.Role+" token"] = v.Token
	}
	tenant := client.New(n3.BaseURL(), secrets["domain token"])

	// Subscriptions with a given and a generated secret.
	recvA := harness.NewReceiver(t, harness.ReceiverOptions{})
	recvB := harness.NewReceiver(t, harness.ReceiverOptions{})
	given := webhook.NewSecret()
	secrets["given sub secret"] = given
	subA, err := tenant.CreateSub(ctx, client.Fields{"model": "call", "post-url": recvA.URL(), "secret": given})
	if err != nil {
		t.Fatal(err)
	}
	subB, err := tenant.CreateSub(ctx, client.Fields{"model": "call", "post-url": recvB.URL()})
	if err != nil {
		t.Fatal(err)
	}
	secrets["generated sub secret"] = subB.Secret

	// Rotations: through the API on a follower (generated), and with the
	// CLI on another node (given).
	rotA, err := tenant.RotateSecret(ctx, subA.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	secrets["rotated (generated) secret"] = rotA.Secret
	cliSecret := webhook.NewSecret()
	secrets["rotated (CLI) secret"] = cliSecret
	if out := n1.MustCLI("--token", secrets["domain token"], "sub", "rotate-secret", subB.ID, "--secret", cliSecret); !strings.Contains(out, cliSecret) {
		t.Fatalf("sub rotate-secret printed %q, want the new secret", out)
	}

	// Error answers to requests that carry secrets.
	short := "whsec_" + base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	secrets["refused short secret"] = short
	_, err = tenant.CreateSub(ctx, client.Fields{"model": "call", "post-url": recvA.URL() + "/x", "secret": short})
	keep(err)
	_, err = tenant.RotateSecret(ctx, subA.ID, short)
	keep(err)
	_, err = tenant.UpdateSub(ctx, subA.ID, client.Fields{"secret": short + "\n"}, true)
	keep(err)
	wrongToken := "hs_" + strings.Repeat("w", 40)
	secrets["wrong token"] = wrongToken
	_, err = client.New(n2.BaseURL(), wrongToken).ListSubs(ctx, nil)
	keep(err)
	wrongJoin := "wrong-join-token-" + strings.Repeat("j", 24)
	secrets["wrong join token"] = wrongJoin
	if code, _ := call(n2, http.MethodPost, "/v1/cluster/join", wrongJoin, []byte(`{}`)); code != http.StatusUnauthorized {
		t.Fatalf("join with a wrong token: %d, want 401", code)
	}
	if code, _ := call(n3, http.MethodPost, "/v1/cluster/join", cl.JoinToken(), []byte(`{"id":"x y"}`)); code != http.StatusBadRequest {
		t.Fatalf("join with a bad body: %d, want 400", code)
	}
	if code, _ := call(n1, http.MethodGet, "/v1/events/ws?authkey="+url.QueryEscape(secrets["domain token"]), "", nil); code != http.StatusUpgradeRequired {
		t.Fatalf("websocket without upgrade: %d, want 426", code)
	}
	if code, _ := call(n2, http.MethodPost, "/v1/events?authkey="+url.QueryEscape(secrets["ingest token"]), "", []byte(`{not json`)); code != http.StatusBadRequest {
		t.Fatalf("bad ingest: %d, want 400", code)
	}
	if code, _ := call(n1, http.MethodGet, "/v1/subscriptions/"+subA.ID, secrets["ingest token"], nil); code != http.StatusForbidden {
		t.Fatalf("ingest token on the admin API: %d, want 403", code)
	}

	// Every node has applied the rotations (the sending node signs with
	// what its replica holds: the new signature starts when it applies the
	// rotation, the old one ends secret-overlap later).
	for _, nd := range cl.Nodes {
		for id, want := range map[string]string{subA.ID: rotA.Secret, subB.ID: cliSecret} {
			waitFor(t, func() (bool, string, string) {
				got, err := client.New(nd.BaseURL(), cl.Root).Secret(ctx, id)
				return err == nil && got == want, nd.ID + " has the rotated secret", fmt.Sprint(err)
			}, 10*time.Second)
		}
	}
	// Ingest with ?authkey= on every node, and delivery through the
	// rotation: every POST carries the new and the old signature.
	for i, nd := range cl.Nodes {
		body := fmt.Sprintf(`[{"model":"call","domain":"one.example","seq":%d},{"model":"call","domain":"one.example","seq":%d}]`, 2*i, 2*i+1)
		if code, b := call(nd, http.MethodPost, "/v1/events?authkey="+url.QueryEscape(secrets["ingest token"]), "", []byte(body)); code != http.StatusAccepted {
			t.Fatalf("ingest on %s: %d %s", nd.ID, code, b)
		}
	}
	for _, c := range []struct {
		r        *harness.Receiver
		old, cur string
	}{{recvA, given, rotA.Secret}, {recvB, subB.Secret, cliSecret}} {
		waitFor(t, func() (bool, string, string) {
			return len(c.r.Events()) >= 6, "6 events", fmt.Sprint(len(c.r.Events()))
		}, 30*time.Second)
		for _, p := range c.r.Posts() {
			if n := len(strings.Fields(p.Header.Get("webhook-signature"))); n != 2 {
				t.Errorf("POST %d of %s: %d signatures, want 2 (new and old)", p.N, p.CorrelationID, n)
			}
			for _, s := range []string{c.old, c.cur} {
				wh, err := standardwebhooks.NewWebhook(s)
				if err != nil {
					t.Fatal(err)
				}
				if err := wh.Verify(p.Body, p.Header); err != nil {
					t.Errorf("POST %d: does not verify with the old or the new secret: %v", p.N, err)
				}
			}
		}
	}

	// Metrics of every node (loopback).
	var metrics []string
	for _, nd := range cl.Nodes {
		code, b := call(nd, http.MethodGet, "/metrics", "", nil)
		if code != http.StatusOK {
			t.Fatalf("%s /metrics: %d", nd.ID, code)
		}
		metrics = append(metrics, b)
	}

	if len(errBodies) < 8 {
		t.Fatalf("only %d error bodies collected", len(errBodies))
	}
	places := map[string]string{}
	for _, nd := range cl.Nodes {
		places[nd.ID+" log"] = nd.Logs()
		if len(places[nd.ID+" log"]) == 0 {
			t.Fatalf("%s: empty log: the search would prove nothing", nd.ID)
		}
	}
	places["error bodies"] = strings.Join(errBodies, "\n")
	for i, m := range metrics {
		places[fmt.Sprintf("n%d /metrics", i+1)] = m
	}
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("%s: empty", what)
		}
		needles := []string{s}
		if key, ok := strings.CutPrefix(s, webhook.SecretPrefix); ok {
			needles = append(needles, key) // the key without its prefix
		}
		for where, text := range places {
			for _, nd := range needles {
				if strings.Contains(text, nd) || strings.Contains(text, url.QueryEscape(nd)) {
					t.Errorf("the %s appears in %s", what, where)
				}
			}
		}
	}
}
