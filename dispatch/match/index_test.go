package match

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hookswitch/hookswitch/dispatch"
)

func mkEvent(t testing.TB, body string) *dispatch.Event {
	t.Helper()
	model, b, err := dispatch.ParseIngest([]byte(body))
	if err != nil {
		t.Fatalf("ParseIngest(%s): %v", body, err)
	}
	return &dispatch.Event{ID: "inc-1", Node: "n1", Seq: 1, IngestMs: 1000, Model: model, Body: b}
}

func hitStrings(hits []Hit) []string {
	out := make([]string, 0, len(hits))
	for _, h := range hits {
		if h.Derived != "" {
			out = append(out, h.SubID+"@"+h.Derived)
		} else {
			out = append(out, h.SubID)
		}
	}
	slices.Sort(out)
	return out
}

func fixtureSubs() []Sub {
	f := func(p, v string) []Filter { return []Filter{{Property: p, Value: v}} }
	return []Sub{
		{ID: "all", Model: "call", Reseller: "*", Domain: "*", User: "*"},
		{ID: "dom-a", Model: "call", Domain: "a"},
		{ID: "dom-a-u100", Model: "call", Domain: "a", User: "100"},
		{ID: "res-r1", Model: "call", Reseller: "r1", Domain: "*"},
		{ID: "res-r1-dom-a", Model: "call", Reseller: "r1", Domain: "a"},
		{ID: "res-r2", Model: "call", Reseller: "r2"},
		{ID: "user-200", Model: "call", User: "200"},
		{ID: "star-a", Model: "*", Domain: "a"},
		{ID: "cdr-a", Model: "cdr", Domain: "a"},
		{ID: "filt-in", Model: "call", Domain: "a", Filters: f("direction", "in")},
		{ID: "pres-a", Model: "presence", Domain: "a"},
		{ID: "pres-open", Model: "presence", Filters: f("user-presence-status", "open")},
		{ID: "pres-email", Model: "presence", Filters: f("email", "*")},
		{ID: "pres-model", Model: "presence", Filters: f("model", "presence")},
		{ID: "sub-model", Model: "subscriber", Filters: f("model", "subscriber")},
		{ID: "lite", Model: "auditlog_lite"},
		{ID: "lite-victim", Model: "auditlog_lite", Domain: "victim"},
		{ID: "lite-actor", Model: "auditlog_lite", Domain: "actor"},
		{ID: "audit-victim", Model: "auditlog", Domain: "victim"},
		{ID: "origid-a", Model: "call_origid", Domain: "a"},
	}
}

func TestIndexMatch(t *testing.T) {
	ix := NewIndex()
	for _, s := range fixtureSubs() {
		if err := ix.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"call in domain a by user 100 of r1",
			`{"model":"call","reseller":"r1","domain":"a","user":"100","direction":"in"}`,
			[]string{"all", "dom-a", "dom-a-u100", "filt-in", "origid-a@call_origid", "res-r1", "res-r1-dom-a", "star-a"}},
		{"call between two domains and users",
			`{"model":"call","reseller":"r2","domain":["b","a"],"user":["200","100"],"direction":"out"}`,
			[]string{"all", "dom-a", "dom-a-u100", "origid-a@call_origid", "res-r2", "star-a", "user-200"}},
		{"duplicate scope values reach a subscription once",
			`{"model":"call","reseller":["r1","r1"],"domain":["a","a"]}`,
			[]string{"all", "dom-a", "origid-a@call_origid", "res-r1", "res-r1-dom-a", "star-a"}},
		{"call without scope reaches only unscoped subscriptions",
			`{"model":"call"}`,
			[]string{"all"}},
		{"call in another domain",
			`{"model":"call","domain":"zzz","reseller":"r9"}`,
			[]string{"all"}},
		{"subscriber reaches presence in reduced form",
			`{"model":"subscriber","domain":"a","user":"100","email":"x@y","user-presence-status":"open"}`,
			[]string{"pres-a@presence", "pres-model@presence", "pres-open@presence", "star-a", "sub-model"}},
		{"presence ingested as such",
			`{"model":"presence","domain":"a","user":"100"}`,
			[]string{"pres-a", "pres-model", "star-a"}},
		{"auditlog create of a user reaches auditlog_lite by target_domain",
			`{"model":"auditlog","domain":"actor","target_domain":"victim","object":"user","action":"create"}`,
			[]string{"audit-victim", "lite-victim@auditlog_lite", "lite@auditlog_lite"}},
		{"auditlog delete via kebab target-domain, case-insensitive",
			`{"model":"auditlog","domain":"actor","target-domain":"victim","object":"CallQueue","action":"Deleted"}`,
			[]string{"audit-victim", "lite-victim@auditlog_lite", "lite@auditlog_lite"}},
		{"auditlog update is not lite",
			`{"model":"auditlog","target_domain":"victim","object":"user","action":"update"}`,
			[]string{"audit-victim"}},
		{"auditlog of another object is not lite",
			`{"model":"auditlog","target_domain":"victim","object":"dialplan","action":"create"}`,
			[]string{"audit-victim"}},
		{"cdr",
			`{"model":"cdr","domain":"a"}`,
			[]string{"cdr-a", "star-a"}},
		{"unknown model reaches only *",
			`{"model":"brand_new","domain":"a"}`,
			[]string{"star-a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := mkEvent(t, tt.body)
			got := hitStrings(ix.Match(ev, nil))
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Match =\n %v\nwant\n %v", got, want)
			}
			ids := ix.MatchIDs(ev, nil)
			if len(ids) != len(want) {
				t.Fatalf("MatchIDs = %v", ids)
			}
		})
	}
}

func TestIndexUpsertRemove(t *testing.T) {
	ix := NewIndex()
	ev := mkEvent(t, `{"model":"call","domain":"a","reseller":"r"}`)
	steps := []struct {
		name string
		do   func() error
		want []string
		n    int // subscriptions in the index
	}{
		{"empty", func() error { return nil }, []string{}, 0},
		{"add domain sub", func() error { return ix.Upsert(Sub{ID: "s1", Model: "call", Domain: "a"}) }, []string{"s1"}, 1},
		{"move to other domain", func() error { return ix.Upsert(Sub{ID: "s1", Model: "call", Domain: "b"}) }, []string{}, 1},
		{"move to reseller bucket", func() error { return ix.Upsert(Sub{ID: "s1", Model: "call", Reseller: "r"}) }, []string{"s1"}, 1},
		{"change model", func() error { return ix.Upsert(Sub{ID: "s1", Model: "cdr"}) }, []string{}, 1},
		{"back to any", func() error { return ix.Upsert(Sub{ID: "s1", Model: "call"}) }, []string{"s1"}, 1},
		{"second sub", func() error { return ix.Upsert(Sub{ID: "s2", Model: "*", Domain: "a"}) }, []string{"s1", "s2"}, 2},
		{"remove first", func() error { ix.Remove("s1"); return nil }, []string{"s2"}, 1},
		{"remove unknown", func() error { ix.Remove("nope"); return nil }, []string{"s2"}, 1},
		{"remove last", func() error { ix.Remove("s2"); return nil }, []string{}, 0},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got := ix.MatchIDs(ev, []string{})
		slices.Sort(got)
		if !reflect.DeepEqual(got, st.want) {
			t.Fatalf("%s: MatchIDs = %v, want %v", st.name, got, st.want)
		}
		if ix.Len() != st.n {
			t.Fatalf("%s: Len = %d, want %d", st.name, ix.Len(), st.n)
		}
	}
	if len(ix.models) != 0 || len(ix.byID) != 0 {
		t.Fatalf("empty index keeps buckets: %v", ix.models)
	}
}

func TestIndexUpsertErrors(t *testing.T) {
	ix := NewIndex()
	if err := ix.Upsert(Sub{ID: "keep", Model: "call"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sub  Sub
	}{
		{"no id", Sub{Model: "call"}},
		{"no model", Sub{ID: "x"}},
		{"bad filter", Sub{ID: "keep", Model: "cdr", Filters: []Filter{{Value: "v"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ix.Upsert(tt.sub); !errors.Is(err, ErrBadSub) {
				t.Fatalf("err = %v, want ErrBadSub", err)
			}
		})
	}
	if got := ix.MatchIDs(mkEvent(t, `{"model":"call"}`), nil); !reflect.DeepEqual(got, []string{"keep"}) {
		t.Fatalf("a failed Upsert changed the index: %v", got)
	}
}

func TestIndexReplace(t *testing.T) {
	ix := NewIndex()
	if err := ix.Upsert(Sub{ID: "old", Model: "call"}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Replace([]Sub{{ID: "n1", Model: "call"}, {ID: "bad"}}); err == nil {
		t.Fatal("Replace with a bad sub: want error")
	}
	ev := mkEvent(t, `{"model":"call"}`)
	if got := ix.MatchIDs(ev, nil); !reflect.DeepEqual(got, []string{"old"}) {
		t.Fatalf("failed Replace changed the index: %v", got)
	}
	if err := ix.Replace([]Sub{{ID: "n1", Model: "call"}, {ID: "n2", Model: "cdr"}}); err != nil {
		t.Fatal(err)
	}
	if got := ix.MatchIDs(ev, nil); !reflect.DeepEqual(got, []string{"n1"}) || ix.Len() != 2 {
		t.Fatalf("after Replace: %v len %d", got, ix.Len())
	}
}

// naiveMatch is the specification: every subscription checked against the
// event, filters evaluated on the actual derived event.
func naiveMatch(t testing.TB, subs map[string]Sub, ev *dispatch.Event) []string {
	var hits []Hit
	derived := derivedModel(ev)
	sc := ev.Scope()
	for _, s := range subs {
		var d string
		switch {
		case s.Model == ev.Model || s.Model == "*":
		case derived != "" && s.Model == derived:
			d = derived
		default:
			continue
		}
		if !scopeOK(orAny(s.Reseller), sc.Reseller) || !scopeOK(orAny(s.Domain), sc.Domain) || !scopeOK(orAny(s.User), sc.User) {
			continue
		}
		form, err := Derive(ev, d)
		if err != nil {
			t.Fatal(err)
		}
		fields, err := form.Fields()
		if err != nil {
			t.Fatal(err)
		}
		fs, err := NewFilterSet(s.Filters)
		if err != nil {
			t.Fatal(err)
		}
		if fs.Match(fields) {
			hits = append(hits, Hit{SubID: s.ID, Derived: d})
		}
	}
	return hitStrings(hits)
}

func scopeOK(want string, have []string) bool {
	return want == "*" || slices.Contains(have, want)
}

func randomSub(r *rand.Rand, id string) Sub {
	pick := func(opts ...string) string { return opts[r.IntN(len(opts))] }
	s := Sub{
		ID:       id,
		Model:    pick("call", "cdr", "*", "presence", "subscriber", "auditlog", "auditlog_lite", "call_origid"),
		Reseller: pick("*", "", "r1", "r2"),
		Domain:   pick("*", "d1", "d2", "d3", "t1"),
		User:     pick("*", "u1", "u2"),
	}
	for range r.IntN(3) {
		s.Filters = append(s.Filters, Filter{
			Property: pick("dir", "user", "model", "email", "user-presence-status", "n"),
			Value:    pick("in", "out", "*", "u1", "call", "presence", "open", "1"),
		})
	}
	return s
}

func randomEvent(t testing.TB, r *rand.Rand) *dispatch.Event {
	pick := func(opts ...string) string { return opts[r.IntN(len(opts))] }
	parts := []string{`"model":"` + pick("call", "cdr", "subscriber", "auditlog", "presence") + `"`}
	for _, f := range []string{"reseller", "domain", "user"} {
		switch r.IntN(4) {
		case 0:
		case 1:
			parts = append(parts, fmt.Sprintf(`%q:%q`, f, pick("r1", "r2", "d1", "d2", "u1", "u2")))
		default:
			parts = append(parts, fmt.Sprintf(`%q:[%q,%q]`, f, pick("r1", "d1", "u1", "d3"), pick("r2", "d2", "u2", "d1")))
		}
	}
	for _, f := range []string{"dir", "email", "user-presence-status"} {
		if r.IntN(2) == 0 {
			parts = append(parts, fmt.Sprintf(`%q:%q`, f, pick("in", "out", "open", "1", "x")))
		}
	}
	if r.IntN(2) == 0 {
		parts = append(parts, `"n":1`)
	}
	parts = append(parts, `"target_domain":"`+pick("t1", "d1")+`"`, `"object":"`+pick("user", "dialplan")+`"`, `"action":"`+pick("create", "update")+`"`)
	return mkEvent(t, "{"+strings.Join(parts, ",")+"}")
}

func TestIndexAgainstNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ix := NewIndex()
	subs := make(map[string]Sub)
	const nSubs, nEvents, nChurn = 300, 2000, 200
	for i := range nSubs {
		s := randomSub(r, fmt.Sprintf("s%d", i))
		subs[s.ID] = s
		if err := ix.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := range nChurn { // replace and remove some, so buckets get edited
		id := fmt.Sprintf("s%d", r.IntN(nSubs))
		if i%3 == 0 {
			delete(subs, id)
			ix.Remove(id)
			continue
		}
		s := randomSub(r, id)
		subs[id] = s
		if err := ix.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for range nEvents {
		ev := randomEvent(t, r)
		got := hitStrings(ix.Match(ev, nil))
		want := naiveMatch(t, subs, ev)
		if !reflect.DeepEqual(got, want) {
			body, _ := ev.Fields()
			t.Fatalf("event %v:\nindex %v\nnaive %v", body, got, want)
		}
		total += len(got)
	}
	if total == 0 {
		t.Fatal("random test matched nothing: generator is broken")
	}
}

func TestIndexConcurrent(t *testing.T) {
	ix := NewIndex()
	ev := mkEvent(t, `{"model":"call","domain":"d1","reseller":"r1","user":"u1","dir":"in"}`)
	r := rand.New(rand.NewPCG(3, 4))
	var subs []Sub
	for i := range 200 {
		subs = append(subs, randomSub(r, fmt.Sprintf("s%d", i)))
	}
	const writers, readers, rounds = 2, 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				s := subs[(i*writers+w)%len(subs)]
				if i%4 == 3 {
					ix.Remove(s.ID)
				} else if err := ix.Upsert(s); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			var dst []Hit
			for range rounds {
				dst = ix.Match(ev, dst[:0])
				seen := make(map[string]bool, len(dst))
				for _, h := range dst {
					if seen[h.SubID] {
						t.Errorf("duplicate hit %s", h.SubID)
					}
					seen[h.SubID] = true
				}
			}
		})
	}
	wg.Wait()
}

func TestDerive(t *testing.T) {
	ev := mkEvent(t, `{"model":"subscriber","user":"100","domain":"a","reseller":"r","email":"x@y",`+
		`"name-first-name":"Ada","name-last-name":"L","user-presence-status":"open","status-message":"hi",`+
		`"site":"s","department":"d","password-hint":"secret"}`)
	tests := []struct {
		derived string
		want    string
	}{
		{"", `{"model":"subscriber","user":"100","domain":"a","reseller":"r","email":"x@y","name-first-name":"Ada","name-last-name":"L","user-presence-status":"open","status-message":"hi","site":"s","department":"d","password-hint":"secret","event-id":"inc-1","node":"n1","ingest-time":1000}`},
		{"presence", `{"model":"presence","user":"100","domain":"a","name-first-name":"Ada","name-last-name":"L","user-presence-status":"open","status-message":"hi","site":"s","department":"d","event-id":"inc-1","node":"n1","ingest-time":1000}`},
		{"call_origid", `{"model":"call_origid","user":"100","domain":"a","reseller":"r","email":"x@y","name-first-name":"Ada","name-last-name":"L","user-presence-status":"open","status-message":"hi","site":"s","department":"d","password-hint":"secret","event-id":"inc-1","node":"n1","ingest-time":1000}`},
	}
	for _, tt := range tests {
		t.Run(tt.derived, func(t *testing.T) {
			d, err := Derive(ev, tt.derived)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(d.JSON()); got != tt.want {
				t.Fatalf("Derive =\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
	if _, err := Derive(ev, "bogus"); err == nil {
		t.Fatal("unknown derived model: want error")
	}
	for _, p := range presenceFields() {
		if !isPresenceField(p) {
			t.Fatalf("isPresenceField(%q) = false", p)
		}
	}
}

// Filters see the fields of the deepest event ingest accepts
// (dispatch.MaxEventDepth): ingest and delivery agree on nesting.
func TestIndexMatchDeepestAcceptedEvent(t *testing.T) {
	n := dispatch.MaxEventDepth - 1
	body := `{"model":"call","domain":"a","a":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `,"direction":"in"}`
	ix := NewIndex()
	for _, s := range []Sub{
		{ID: "filt-in", Model: "call", Domain: "a", Filters: []Filter{{Property: "direction", Value: "in"}}},
		{ID: "filt-a", Model: "call", Filters: []Filter{{Property: "a", Value: "*"}}},
	} {
		if err := ix.Upsert(s); err != nil {
			t.Fatal(err)
		}
	}
	got := hitStrings(ix.Match(mkEvent(t, body), nil))
	if want := []string{"filt-a", "filt-in"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("hits %v, want %v", got, want)
	}
	if _, _, err := dispatch.ParseIngest([]byte(`{"model":"call","a":` + strings.Repeat("[", n+1) + strings.Repeat("]", n+1) + `}`)); err == nil {
		t.Fatal("one level deeper is accepted")
	}
}
