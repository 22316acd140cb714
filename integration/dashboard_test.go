package integration

// The status dashboard (/ui/) end to end in headless Chromium, driven over
// the DevTools protocol by chromedp, against a 3-node cluster of agent
// processes. It skips only when no Chromium is installed (scripts/test
// installs Debian's chromium, so CI runs it).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookswitch/hookswitch/httpapi"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// Bounds of the dashboard test.
const (
	// uiStepTimeout bounds one wait for the page (the page refreshes every
	// 2s; a delivery through the cluster takes a report interval or two,
	// much more on a loaded machine where leases expire and leaders change).
	uiStepTimeout = time.Minute
	// uiTestTimeout bounds the whole browser session.
	uiTestTimeout = 6 * time.Minute
)

// screenshotEnv names a directory that also receives the screenshots
// (docs/img is refreshed with it); they always go to the test's temp dir.
const screenshotEnv = "HOOKSWITCH_UI_SCREENSHOTS"

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is a headless Chromium tab and what its console reported.
type browser struct {
	t   *testing.T
	ctx context.Context
	dir string // screenshots

	mu       sync.Mutex
	problems []string // exceptions, console errors, CSP violations
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := findChromium()
	if exe == "" {
		t.Skip("chromium is not installed (apt-get install chromium; scripts/test installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 960),
	)
	ctx, cancel := context.WithTimeout(context.Background(), uiTestTimeout)
	t.Cleanup(cancel)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(ctx)
	t.Cleanup(cancelTab)
	b := &browser{t: t, ctx: ctx, dir: t.TempDir()}
	// The first Run starts the browser; the console is read from then on.
	b.run("start the browser", chromedp.Navigate("about:blank"))
	msgs := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			// Network entries are the API's expected 401/403/404
			// answers; CSP violations come with the source "security".
			if (m.Type == chromedp.ConsoleError && m.Source != "network") || m.IsException() {
				b.mu.Lock()
				b.problems = append(b.problems, m.String()+" "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancelTab(); <-done })
	// On failure, the page as it was and the screenshots so far are kept
	// (the test's temp dir is removed when it ends).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if png, err := chromedp.Run(sctx, chromedp.CaptureScreenshot()); err == nil {
			_ = os.WriteFile(filepath.Join(b.dir, "dashboard-failure.png"), png, 0o644)
		}
		keep, err := os.MkdirTemp("", "hookswitch-dashboard-")
		if err != nil {
			return
		}
		entries, _ := os.ReadDir(b.dir)
		for _, e := range entries {
			if data, err := os.ReadFile(filepath.Join(b.dir, e.Name())); err == nil {
				_ = os.WriteFile(filepath.Join(keep, e.Name()), data, 0o644)
			}
		}
		t.Logf("screenshots kept in %s", keep)
	})
	return b
}

func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v\n%s", what, err, b.pageText())
	}
}

// pageText is the visible text of the page, for failure messages.
// click clicks the element selector finds, inside the page, as soon as
// there is one. Tables the page redraws every 2 s replace their rows: a
// click by DOM node id can name a row that was just replaced ("Could not
// find node with given id"), a click in the page cannot.
func (b *browser) click(what, selector string) {
	b.t.Helper()
	b.wait(what, `(() => { const e = document.querySelector(`+jsString(selector)+`); if (!e) return false; e.click(); return true })()`)
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(page text unavailable: " + err.Error() + ")"
	}
	return "page text:\n" + s
}

// wait polls the JavaScript expression js until it is true.
func (b *browser) wait(what, js string) {
	b.t.Helper()
	_, err := chromedp.Run(b.ctx, chromedp.Poll[any](js,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(uiStepTimeout)))
	if err != nil {
		b.t.Fatalf("browser: waiting for %s (%s): %v\n%s", what, js, err, b.pageText())
	}
}

// eval returns the value of the JavaScript expression js.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("browser: evaluate %s: %v\n%s", js, err, b.pageText())
	}
	return v
}

// screenshot saves the viewport as name.png in the test's temp dir (and in
// $HOOKSWITCH_UI_SCREENSHOTS when set).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("browser: screenshot %s: %v", name, err)
	}
	dirs := []string{b.dir}
	if d := os.Getenv(screenshotEnv); d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "dashboard-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			b.t.Fatalf("screenshot: %v", err)
		}
		b.t.Logf("screenshot: %s", p)
	}
}

// noProblems fails the test if the page threw, logged an error or had
// something refused by its Content-Security-Policy.
func (b *browser) noProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Errorf("browser reported: %s", p)
	}
	b.problems = nil
}

func nodeDraining(v httpapi.ClusterView, id string) bool {
	for _, n := range v.Nodes {
		if n.ID == id {
			return n.Draining
		}
	}
	return false
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	q, _ := json.Marshal(s)
	return string(q)
}

func TestDashboard(t *testing.T) {
	skipShort(t)
	if findChromium() == "" {
		t.Skip("chromium is not installed (apt-get install chromium; scripts/test installs it)")
	}
	cl := startCluster(t, 3)
	n1 := cl.Nodes[0]
	sink := harness.NewReceiver(t, harness.ReceiverOptions{})
	b := newBrowser(t)
	ui := n1.BaseURL() + "/ui/"
	ctx, cancel := context.WithTimeout(context.Background(), uiTestTimeout)
	defer cancel()

	// Log in with the super token through the form.
	b.run("log in",
		chromedp.Navigate(ui),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#token"), cl.Root),
		chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
	)

	// Cluster: the 3 nodes, up.
	b.wait("the cluster view with 3 nodes up",
		`document.querySelectorAll('#cluster-table tbody tr').length === 3 &&
		 [...document.querySelectorAll('#cluster-table tbody tr')].every(r => r.querySelector('.health [data-status]').dataset.status === 'up')`)
	ids := eval[[]string](b, `[...document.querySelectorAll('#cluster-table tbody tr')].map(r => r.dataset.node).sort()`)
	if strings.Join(ids, ",") != "n1,n2,n3" {
		t.Fatalf("cluster view lists %q, want n1,n2,n3", ids)
	}
	b.wait("the leader named", `/leader: n[123]/.test(document.querySelector('#cluster-leader').textContent)`)
	b.screenshot("cluster")

	// Create a subscription through the form, for reseller r1 / a.example.
	b.run("open the subscriptions",
		chromedp.Click(chromedp.CSS("#nav-subs")),
		chromedp.Click(chromedp.CSS("#new-sub-toggle")),
		chromedp.WaitVisible(chromedp.CSS("#new-sub")),
		chromedp.SendKeys(chromedp.CSS(`#new-sub [name="model"]`), "call"),
		chromedp.SendKeys(chromedp.CSS(`#new-sub [name="post-url"]`), sink.URL()),
		chromedp.SendKeys(chromedp.CSS(`#new-sub [name="reseller"]`), "r1"),
		chromedp.SendKeys(chromedp.CSS(`#new-sub [name="domain"]`), "a.example"),
		chromedp.Click(chromedp.CSS("#new-sub button[type=submit]")),
	)
	b.wait("the creation confirmed", `document.querySelector('#new-sub-result').textContent.startsWith('Created ')`)
	root := client.New(n1.BaseURL(), cl.Root)
	subs, err := root.ListSubs(ctx, nil)
	if err != nil || len(subs) != 1 || subs[0].Domain != "a.example" || subs[0].PostURL != sink.URL() {
		t.Fatalf("after creating through the dashboard: %+v, %v; want one a.example subscription", subs, err)
	}
	subA := subs[0].ID
	// Another domain's subscription, which a.example's token must not see.
	other := createSubOn(t, n1, client.Fields{"reseller": "r1", "domain": "b.example"})
	rowA := `document.querySelector('#subs-table tr[data-sub=` + jsString(subA) + `]')`
	b.wait("both subscriptions listed", rowA+` && document.querySelectorAll('#subs-table tbody tr').length === 2`)

	// Ingest events and watch the counters move.
	const nEvents = 5
	for i := range nEvents {
		ev := fmt.Sprintf(`{"model":"call","reseller":"r1","domain":"a.example","n":%d}`, i)
		if err := ingestEvent(ctx, n1, []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	// At least once: a subscription moved between nodes (a node briefly
	// down on a busy machine) may deliver an event twice.
	b.wait("the events counted", `Number(`+rowA+`.querySelector('.events').textContent) >= `+strconv.Itoa(nEvents)+` && Number(`+rowA+`.querySelector('.posts').textContent) >= 1`)
	if got := len(sink.Events()); got < nEvents {
		t.Fatalf("the receiver got %d events, want %d", got, nEvents)
	}
	sender, err := root.GetSub(ctx, subA)
	if err != nil {
		t.Fatal(err)
	}
	// moved reports whether the subscription's sender changed since the
	// deliveries: status and per-minute counts are the sender's own.
	moved := func() bool {
		v, err := root.GetSub(ctx, subA)
		return err == nil && v.CurrentActiveServer != sender.CurrentActiveServer
	}
	waitFor(t, func() (bool, string, string) {
		st := eval[string](b, rowA+`.querySelector('.status [data-status]').dataset.status`)
		if st != "active" && moved() {
			t.Logf("the subscription moved from %s: its status %q is the new sender's", sender.CurrentActiveServer, st)
			return true, "", ""
		}
		return st == "active", "status active", st
	}, uiStepTimeout)
	// Its detail: the chart of the sending node's per-minute counts (asked
	// of the sender by the node the page talks to).
	b.click("open the detail", `#subs-table tr[data-sub=`+jsString(subA)+`] td`)
	b.wait("the chart", `document.querySelector('#chart svg.chart') !== null && document.querySelector('#chart-summary').textContent.startsWith('Last hour: ')`)
	waitFor(t, func() (bool, string, string) {
		summary := eval[string](b, `document.querySelector('#chart-summary').textContent + ' ' + document.querySelector('#chart-node').textContent`)
		var d int
		_, _ = fmt.Sscanf(summary, "Last hour: %d events delivered", &d)
		if d < nEvents && moved() {
			t.Logf("the subscription moved from %s: the chart shows the new sender's counts: %s", sender.CurrentActiveServer, summary)
			return true, "", ""
		}
		return d >= nEvents && strings.Contains(summary, "counted by "+sender.CurrentActiveServer), fmt.Sprintf("at least %d delivered, counted by %s", nEvents, sender.CurrentActiveServer), summary
	}, uiStepTimeout)
	// Every node answers the stats with the sender's counts (the others ask
	// the sender over the node-to-node API).
	for _, nd := range cl.Nodes {
		var v httpapi.StatsView
		if err := client.New(nd.BaseURL(), cl.Root).Do(ctx, "GET", "/v1/subscriptions/"+subA+"/stats", nil, &v); err != nil {
			t.Fatalf("stats through %s: %v", nd.ID, err)
		}
		var d uint64
		for _, m := range v.Minutes {
			d += m.Delivered
		}
		if (v.Node != sender.CurrentActiveServer || d < nEvents || v.Note != "") && !moved() {
			t.Errorf("stats through %s: node %q, %d delivered, note %q; want %s's counts, at least %d, no note", nd.ID, v.Node, d, v.Note, sender.CurrentActiveServer, nEvents)
		}
	}
	// The test action shows the receiver's answer.
	b.run("send a test event", chromedp.Click(chromedp.CSS("#a-test")))
	b.wait("the receiver's answer", `document.querySelector('#a-result').textContent.includes('receiver answered 200')`)
	// Toggling the form twice clears the creation message (with the
	// signing secret) before the screenshot.
	b.run("clear the creation message", chromedp.Click(chromedp.CSS("#new-sub-toggle")), chromedp.Click(chromedp.CSS("#new-sub-toggle")))
	b.wait("the creation message gone", `document.querySelector('#new-sub-result').textContent === '' && document.querySelector('#new-sub').hidden`)
	b.screenshot("subscriptions")

	// Rotate the signing secret: the new one is shown once, and it is
	// the one the API now serves.
	oldSecret, err := root.Secret(ctx, subA)
	if err != nil {
		t.Fatal(err)
	}
	b.run("rotate the secret", chromedp.Click(chromedp.CSS("#a-rotate")))
	b.wait("a new secret shown", `document.querySelector('#a-result').textContent.includes('whsec_')`)
	newSecret, err := root.Secret(ctx, subA)
	if err != nil || newSecret == oldSecret {
		t.Fatalf("after rotating in the dashboard: secret changed %v, %v", newSecret != oldSecret, err)
	}
	b.wait("the shown secret is the new one", `document.querySelector('#a-result').textContent.includes(`+jsString(newSecret)+`)`)

	// Pause: the status changes, in words.
	b.run("pause", chromedp.Click(chromedp.CSS("#a-pause")))
	b.wait("the status paused", rowA+`.querySelector('.status').textContent.includes('paused')`)
	if v, err := root.GetSub(ctx, subA); err != nil || v.Status != "paused" {
		t.Fatalf("after pausing in the dashboard: status %q, %v; want paused", v.Status, err)
	}
	b.run("resume", chromedp.Click(chromedp.CSS("#a-resume")))
	b.wait("the status no longer paused", `!`+rowA+`.querySelector('.status').textContent.includes('paused')`)

	// Replay from a minute ago: the five events go out again.
	b.run("replay from a minute ago", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`(() => {
			const d = new Date(Date.now() - 60000 - new Date().getTimezoneOffset() * 60000);
			document.querySelector('#a-replay-from').value = d.toISOString().slice(0, 19);
			return true;
		})()`))
		return err
	}), chromedp.Click(chromedp.CSS("#a-replay")))
	b.wait("the replay confirmed", `document.querySelector('#a-result').textContent.includes('replaying from')`)
	waitFor(t, func() (bool, string, string) {
		return len(sink.Events()) >= 2*nEvents, fmt.Sprintf("at least %d events at the receiver", 2*nEvents), strconv.Itoa(len(sink.Events()))
	}, uiStepTimeout)

	// The live tail: a filter, then an ingested event appears.
	b.run("open the tail", chromedp.Click(chromedp.CSS("#nav-tail")))
	b.wait("the tail connected", `document.querySelector('#tail-state').textContent.includes('live')`)
	b.run("set a filter",
		chromedp.SendKeys(chromedp.CSS("#tail-filter"), "model=call domain=a.example"),
		chromedp.Click(chromedp.CSS("#tail-form button[type=submit]")))
	b.wait("the filter accepted", `document.querySelector('#tail-state').textContent.includes('filters applied (2)')`)
	marker := fmt.Sprintf("tail-%d", time.Now().UnixNano())
	for _, ev := range []string{
		`{"model":"call","reseller":"r1","domain":"b.example","marker":"filtered-out"}`,
		`{"model":"call","reseller":"r1","domain":"a.example","marker":"` + marker + `"}`,
	} {
		if err := ingestEvent(ctx, cl.Nodes[1], []byte(ev)); err != nil {
			t.Fatal(err)
		}
	}
	b.wait("the event in the tail", `document.querySelector('#tail-table tbody').textContent.includes(`+jsString(marker)+`)`)
	tailText := eval[string](b, `document.querySelector('#tail-table tbody').textContent`)
	if strings.Contains(tailText, "filtered-out") {
		t.Fatalf("the tail shows an event its filter excludes: %s", tailText)
	}
	b.screenshot("tail")

	// Drain and undrain a node (after the deliveries: draining moves
	// subscriptions).
	b.run("open the cluster", chromedp.Click(chromedp.CSS("#nav-cluster")))
	b.wait("the cluster view", `document.querySelectorAll('#cluster-table tbody tr').length === 3`)
	n3Row := `document.querySelector('#cluster-table tr[data-node="n3"]')`
	b.click("drain n3", `#cluster-table tr[data-node="n3"] button.drain`)
	b.wait("n3 draining", n3Row+`.querySelector('.draining').textContent.includes('yes')`)
	if v, err := n1.View(); err != nil || !nodeDraining(v, "n3") {
		t.Fatalf("after draining n3 in the dashboard: %v, %v; want n3 draining", harness.Summary(v), err)
	}
	b.click("undrain n3", `#cluster-table tr[data-node="n3"] button.drain`)
	b.wait("n3 not draining", n3Row+`.querySelector('.draining').textContent.includes('no')`)

	// A domain token, through the URL fragment: only its domain, no
	// cluster view, and the token gone from the address bar.
	tok, err := root.CreateToken(ctx, httpapi.TokenRequest{Role: "domain", Reseller: "r1", Domain: "a.example"})
	if err != nil {
		t.Fatal(err)
	}
	b.run("log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	if left := eval[string](b, `document.querySelector('main').textContent`); strings.Contains(left, "whsec_") || strings.Contains(left, subA) {
		t.Fatalf("after logging out the page still shows a secret or a subscription:\n%s", left)
	}
	b.run("log in with a domain token", chromedp.Navigate(ui+"#token="+tok.Token))
	b.wait("the domain's subscriptions", rowA+` !== null && document.querySelector('#who').dataset.role === 'scoped'`)
	type pageState struct {
		Rows          []string `json:"rows"`
		ClusterHidden bool     `json:"clusterHidden"`
		Href          string   `json:"href"`
		Stored        bool     `json:"stored"`
	}
	state := eval[pageState](b, `({rows: [...document.querySelectorAll('#subs-table tbody tr')].map(r => r.dataset.sub),
		clusterHidden: document.querySelector('#nav-cluster').hidden,
		href: location.href,
		stored: sessionStorage.getItem('hookswitch.token') === `+jsString(tok.Token)+`})`)
	if strings.Join(state.Rows, ",") != subA {
		t.Errorf("a.example's token sees %q, want only %s (not %s)", state.Rows, subA, other.ID)
	}
	if !state.ClusterHidden {
		t.Error("a domain token sees the cluster view")
	}
	if strings.Contains(state.Href, tok.Token) || !state.Stored {
		t.Errorf("the token from the fragment: address %q, in sessionStorage %v; want it moved out of the address", state.Href, state.Stored)
	}
	b.screenshot("domain")

	// A revoked token returns to the login.
	if err := root.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	b.wait("the login after a 401", `!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.includes('401')`)
	b.noProblems()
}
