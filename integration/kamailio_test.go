package integration

// The Kamailio source end to end: SIPp calls through a real Kamailio
// running docs/kamailio.cfg, its evapi events read by a dev node started
// with --sources, delivered to webhooks. Needs kamailio,
// kamailio-extra-modules and sip-tester (scripts/test installs them).

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookswitch/hookswitch/dispatch/source"
	"github.com/hookswitch/hookswitch/httpapi/client"
	"github.com/hookswitch/hookswitch/integration/harness"
)

// deliverTimeout bounds the delivery of a batch of calls' events.
const deliverTimeout = 30 * time.Second

// callKind is one kind of call the test places.
type callKind struct {
	uac, uas    string // SIPp scenarios (uas: SIPp's own)
	disposition string
	events      []string // the call events of one such call, in order
}

var callKinds = []callKind{
	{"uac_answer.xml", "uas", "answered", []string{"start", "answer", "end"}},
	{"uac_busy.xml", "uas_busy.xml", "busy", []string{"start", "end"}},
	{"uac_cancel.xml", "uas_ring.xml", "cancelled", []string{"start", "end"}},
}

// byCall groups a receiver's events by callid, in arrival order. (Each
// subscription has its own receiver: a receiver keys events by event-id,
// and call_origid delivers the call events' ids again.)
func byCall(r *harness.Receiver) map[string][]harness.Event {
	out := map[string][]harness.Event{}
	for _, ev := range r.Events() {
		id, _ := ev.Fields["callid"].(string)
		out[id] = append(out[id], ev)
	}
	return out
}

func str(f map[string]any, k string) string {
	switch v := f[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// checkCalls checks the call, cdr and call_origid subscriptions' events:
// exactly the calls of want (callid → kind), each complete and in order,
// nothing else.
func checkCalls(t *testing.T, rs *receivers, want map[string]callKind) {
	t.Helper()
	calls, cdrs, origs := byCall(rs.call), byCall(rs.cdr), byCall(rs.orig)
	if len(calls) != len(want) || len(cdrs) != len(want) || len(origs) != len(want) {
		t.Errorf("calls in the call/cdr/call_origid subscriptions: %d/%d/%d, want %d each", len(calls), len(cdrs), len(origs), len(want))
	}
	for id, k := range want {
		var got []string
		for _, ev := range calls[id] {
			got = append(got, str(ev.Fields, "event"))
			if m, d := str(ev.Fields, "model"), str(ev.Fields, "domain"); m != "call" || d != "example.com" {
				t.Errorf("call %s: model %q domain %q", id, m, d)
			}
			if str(ev.Fields, "orig_callid") != id || str(ev.Fields, "node") == "" || str(ev.Fields, "event-id") == "" {
				t.Errorf("call %s: orig_callid/node/event-id missing: %v", id, ev.Fields)
			}
		}
		if strings.Join(got, ",") != strings.Join(k.events, ",") {
			t.Errorf("call %s (%s): call events %v, want %v in this order", id, k.disposition, got, k.events)
			continue
		}
		end := calls[id][len(calls[id])-1].Fields
		if str(end, "remove") != "yes" || str(end, "disposition") != k.disposition {
			t.Errorf("call %s: last event remove=%q disposition=%q, want yes %s", id, str(end, "remove"), str(end, "disposition"), k.disposition)
		}
		if len(cdrs[id]) != 1 {
			t.Errorf("call %s: %d cdrs, want 1", id, len(cdrs[id]))
			continue
		}
		c := cdrs[id][0].Fields
		dur, err := strconv.ParseInt(str(c, "duration_ms"), 10, 64)
		switch {
		case str(c, "model") != "cdr", str(c, "domain") != "example.com", str(c, "to") != "2002",
			!strings.HasPrefix(str(c, "from"), "caller"), str(c, "disposition") != k.disposition,
			str(c, "orig_callid") != id, str(c, "time_start") == "", str(c, "time_release") == "", err != nil:
			t.Errorf("call %s (%s): cdr %v", id, k.disposition, c)
		case k.disposition == "answered" && (dur < 50 || dur > 20000):
			// The UAC hangs up 100 ms after the answer.
			t.Errorf("call %s: answered, duration_ms %d, want about 100", id, dur)
		case k.disposition != "answered" && dur != 0:
			t.Errorf("call %s: %s, duration_ms %d, want 0", id, k.disposition, dur)
		}
		// call_origid: the first event and the removal; the answer
		// changes no orig_* field and is collapsed.
		var og []string
		for _, ev := range origs[id] {
			og = append(og, str(ev.Fields, "event"))
		}
		if strings.Join(og, ",") != "start,end" {
			t.Errorf("call %s: call_origid events %v, want [start end]", id, og)
		}
	}
}

// placeCalls places n calls of each kind and returns callid → kind. The
// callids are told apart from earlier ones by what the receiver had.
func placeCalls(t *testing.T, k *kamailio, uas map[string]int, n int, r *harness.Receiver) map[string]callKind {
	t.Helper()
	before := byCall(r)
	out := map[string]callKind{}
	total := 0
	for _, ck := range callKinds {
		had := byCall(r)
		sippUAC(t, k, ck.uac, uas[ck.uas], n, 20)
		total += n
		// Attribute the new callids to this kind once their first event
		// is in.
		harness.WaitFor(t, func() (bool, string, string) {
			now := byCall(r)
			return len(now)-len(before) >= total, fmt.Sprintf("%d new calls", total), fmt.Sprint(len(now) - len(before))
		}, deliverTimeout)
		for id := range byCall(r) {
			if _, old := had[id]; !old {
				if _, seen := out[id]; !seen {
					out[id] = ck
				}
			}
		}
	}
	return out
}

// expectedEvents is how many events want's calls make: their call events
// and one cdr each.
func expectedEvents(want map[string]callKind) int {
	n := 0
	for _, k := range want {
		n += len(k.events) + 1
	}
	return n
}

func TestKamailioSource(t *testing.T) {
	needKamailio(t)
	k := newKamailio(t)
	// A fake evapi server as a second source: garbage and a truncated
	// netstring must not disturb the real one, nor the node.
	fake := newFakeEvapiServer(t)
	realName := "kamailio://" + k.EvapiAddr
	fakeName := "kamailio://" + fake.addr()
	// The sources as a TOML list in a config file, with an AMI source
	// whose password must never show (nothing listens on its port).
	amiPort := harness.FreePorts(t, "127.0.0.1", 1)[0]
	amiName := fmt.Sprintf("ami://hs@127.0.0.1:%d", amiPort)
	cfg := filepath.Join(t.TempDir(), "hookswitch.toml")
	toml := fmt.Sprintf("sources = [\"http\", %q, %q, \"ami://hs:%s@127.0.0.1:%d\"]\n", realName, fakeName, amiSecret, amiPort)
	if err := os.WriteFile(cfg, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	nd := harness.StartDev(t, "--config", cfg)
	waitSource(t, nd, realName, "the Kamailio source connected", func(st source.Status) bool { return st.Connected })
	waitSource(t, nd, amiName, "the AMI source to fail to connect", func(st source.Status) bool { return st.Errors > 0 && !st.Connected })

	rs := subscribe(t, nd)

	uas := map[string]int{}
	for _, ck := range callKinds {
		uas[ck.uas] = sippUAS(t, ck.uas)
	}
	const n = 3
	want := placeCalls(t, k, uas, n, rs.call)
	if len(want) != n*len(callKinds) {
		t.Fatalf("%d calls seen, want %d", len(want), n*len(callKinds))
	}
	total := expectedEvents(want)
	rs.wait(t, total)

	// Kamailio restarts: the source reconnects; calls after it arrive.
	k.stop()
	waitSource(t, nd, realName, "the source to notice the restart", func(st source.Status) bool { return !st.Connected })
	k.start()
	waitSource(t, nd, realName, "the source to reconnect", func(st source.Status) bool { return st.Connected && st.Connects >= 2 })
	for id, ck := range placeCalls(t, k, uas, n, rs.call) {
		want[id] = ck
	}
	total = expectedEvents(want)
	rs.wait(t, total)
	// call_origid sees two events per call.
	harness.WaitFor(t, func() (bool, string, string) {
		got := len(rs.orig.Events())
		return got >= 2*len(want), fmt.Sprintf("%d call_origid events", 2*len(want)), fmt.Sprint(got)
	}, deliverTimeout)

	// Nothing else: the source appended exactly these events, and the
	// receiver has each once.
	st, _ := sourceStatus(t, nd, realName)
	if st.EventsAppended != uint64(total) || st.EventsDropped != 0 {
		t.Errorf("source status %+v: want %d events appended, none dropped", st, total)
	}
	checkCalls(t, rs, want)
	for _, r := range []*harness.Receiver{rs.call, rs.cdr, rs.orig} {
		if extra, ids := r.Duplicates(); extra != 0 {
			t.Errorf("%d duplicate deliveries: %v", extra, ids)
		}
	}

	// The fake evapi server: garbage then a good event, a truncated
	// netstring and a close; the source reconnects and reads on.
	fake.send(t, "GARBAGE LINE\r\n"+netstring(fakeEvent("fake-1"))+"77:{\"event\":\"inv")
	fake.close(t)
	fst := waitSource(t, nd, fakeName, "the fake source to reconnect after garbage and a truncated netstring", func(st source.Status) bool {
		return st.Connects >= 2 && st.Connected
	})
	fake.send(t, netstring(fakeEvent("fake-2")))
	fst = waitSource(t, nd, fakeName, "the fake source's events after the reconnect", func(st source.Status) bool { return st.EventsAppended >= 2 })
	if fst.Errors < 2 || fst.LastError == "" {
		t.Errorf("fake source status %+v: want the garbage and the truncation counted", fst)
	}
	logs := nd.Logs()
	for _, s := range []string{"garbage on the evapi socket", "truncated"} {
		if !strings.Contains(logs, s) {
			t.Errorf("the node's log does not mention %q", s)
		}
	}
	// The node keeps serving.
	nd.WaitReady(readyTimeout)
	if st2, _ := sourceStatus(t, nd, realName); !st2.Connected {
		t.Errorf("the real source is no longer connected: %+v", st2)
	}
	out := nd.MustCLI("status")
	if !strings.Contains(out, realName) || !strings.Contains(out, fakeName) || !strings.Contains(out, amiName) {
		t.Errorf("hookswitch status does not list the sources:\n%s", out)
	}
	metrics := getMetrics(t, nd)
	if !strings.Contains(metrics, `hookswitch_source_connected{kind="kamailio",source="`+realName+`"} 1`) {
		t.Errorf("/metrics lacks the Kamailio source connected")
	}
	for what, text := range map[string]string{"the log": nd.Logs(), "status": out, "/metrics": metrics} {
		if strings.Contains(text, amiSecret) {
			t.Errorf("the AMI password appears in %s", what)
		}
	}
}

// amiSecret is the password of the test's AMI source.
const amiSecret = "n0t-in-the-logs"

func getMetrics(t *testing.T, nd *harness.Node) string {
	t.Helper()
	resp, err := nd.HTTPClient().Get(nd.BaseURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// receivers are the webhook receivers of the call, cdr and call_origid
// subscriptions (domain example.com).
type receivers struct{ call, cdr, orig *harness.Receiver }

func subscribe(t *testing.T, nd *harness.Node) *receivers {
	t.Helper()
	rs := &receivers{}
	for model, r := range map[string]**harness.Receiver{"call": &rs.call, "cdr": &rs.cdr, "call_origid": &rs.orig} {
		*r = harness.NewReceiver(t, harness.ReceiverOptions{})
		createSub(t, nd.API(), client.Fields{"model": model, "domain": "example.com", "post-url": (*r).URL()})
	}
	return rs
}

// wait waits until the call and cdr receivers have total events.
func (rs *receivers) wait(t *testing.T, total int) {
	t.Helper()
	harness.WaitFor(t, func() (bool, string, string) {
		got := len(rs.call.Events()) + len(rs.cdr.Events())
		return got >= total, fmt.Sprintf("%d call and cdr events", total), fmt.Sprint(got)
	}, deliverTimeout)
}

func netstring(s string) string { return fmt.Sprintf("%d:%s,", len(s), s) }

func fakeEvent(id string) string {
	return `{"event":"invite","callid":"` + id + `","from_user":"9","from_domain":"fake.example","to_user":"8","to_domain":"fake.example","ts":"1.0","init_ts":"1.0"}`
}

// fakeEvapiServer accepts connections and hands them to the test.
type fakeEvapiServer struct {
	ln    net.Listener
	conns chan net.Conn
	cur   net.Conn
}

func newFakeEvapiServer(t *testing.T) *fakeEvapiServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeEvapiServer{ln: ln, conns: make(chan net.Conn, 8)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		if f.cur != nil {
			f.cur.Close()
		}
	})
	return f
}

func (f *fakeEvapiServer) addr() string { return f.ln.Addr().String() }

// send writes s to the latest connection (waiting for one).
func (f *fakeEvapiServer) send(t *testing.T, s string) {
	t.Helper()
	for f.cur == nil || len(f.conns) > 0 {
		select {
		case c := <-f.conns:
			if f.cur != nil {
				f.cur.Close()
			}
			f.cur = c
		case <-time.After(connectTimeout):
			t.Fatal("the source did not connect to the fake evapi server")
		}
	}
	if _, err := f.cur.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeEvapiServer) close(t *testing.T) {
	t.Helper()
	if f.cur != nil {
		f.cur.Close()
		f.cur = nil
	}
}

// TestKamailioThroughput measures calls per second end to end (SIPp →
// Kamailio → the source → the log → webhooks) with nothing lost. It runs
// only when HOOKSWITCH_KAMAILIO_CALLS is set (docs/performance.md):
//
//	HOOKSWITCH_KAMAILIO_CALLS=2000 HOOKSWITCH_KAMAILIO_RATE=200 \
//	  go test -count=1 -run 'TestKamailioThroughput$' -v ./integration/
func TestKamailioThroughput(t *testing.T) {
	calls, _ := strconv.Atoi(os.Getenv("HOOKSWITCH_KAMAILIO_CALLS"))
	if calls <= 0 {
		t.Skip("set HOOKSWITCH_KAMAILIO_CALLS (and HOOKSWITCH_KAMAILIO_RATE, calls per second) to measure")
	}
	rate, _ := strconv.Atoi(os.Getenv("HOOKSWITCH_KAMAILIO_RATE"))
	if rate <= 0 {
		rate = 100
	}
	needKamailio(t)
	k := newKamailio(t)
	name := "kamailio://" + k.EvapiAddr
	nd := harness.StartDev(t, "--sources", name)
	waitSource(t, nd, name, "the Kamailio source connected", func(st source.Status) bool { return st.Connected })
	rs := subscribe(t, nd)
	uas := sippUAS(t, "uas")
	start := time.Now()
	sippUAC(t, k, "uac_answer.xml", uas, calls, rate)
	sent := time.Since(start)
	// Every call: start, answer, end and a cdr.
	harness.WaitFor(t, func() (bool, string, string) {
		got := len(rs.call.Events()) + len(rs.cdr.Events())
		return got >= 4*calls, fmt.Sprintf("%d events", 4*calls), fmt.Sprint(got)
	}, deliverTimeout+time.Duration(calls/max(rate, 1))*time.Second)
	took := time.Since(start)
	st, _ := sourceStatus(t, nd, name)
	cdrs := byCall(rs.cdr)
	if len(cdrs) != calls || st.EventsDropped != 0 || st.EventsAppended != uint64(4*calls) {
		t.Errorf("%d calls with a cdr, source %+v: want %d, none dropped", len(cdrs), st, calls)
	}
	for _, r := range []*harness.Receiver{rs.call, rs.cdr} {
		if extra, _ := r.Duplicates(); extra != 0 {
			t.Errorf("%d duplicates", extra)
		}
	}
	var lat []time.Duration
	for _, evs := range cdrs {
		if ms, err := strconv.ParseInt(str(evs[0].Fields, "ingest-time"), 10, 64); err == nil {
			lat = append(lat, evs[0].At.Sub(time.UnixMilli(ms)))
		}
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	t.Logf("calls %d at %d/s offered: SIPp done in %s, all %d events delivered in %s: %.1f calls/s end to end, 0 lost; cdr ingest→webhook p50 %s p99 %s",
		calls, rate, sent.Round(time.Millisecond), 4*calls, took.Round(time.Millisecond), float64(calls)/took.Seconds(), p(0.5), p(0.99))
}
