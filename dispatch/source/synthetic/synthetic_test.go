package synthetic

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// play steps a seeded PBX over span in tick steps and returns its events.
func play(t *testing.T, o Options, span, tick time.Duration) (*PBX, []Event) {
	t.Helper()
	p := New(o)
	t0 := time.Unix(1_800_000_000, 0)
	var all []Event
	for at := time.Duration(0); at <= span; at += tick {
		all = append(all, p.Step(t0.Add(at))...)
	}
	return p, all
}

func TestCallLifecycle(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate float64
		tick time.Duration
	}{
		{"default rate, fine ticks", 0, 100 * time.Millisecond},
		{"fast, coarse ticks", 20, time.Second},
		{"slow", 0.5, 250 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			span := 30 * time.Second
			p, evs := play(t, Options{Rate: tc.rate, Seed: 7}, span, tc.tick)
			rate := tc.rate
			if rate == 0 {
				rate = DefaultRate
			}
			st := p.Stats()
			if want := uint64(span.Seconds()*rate) + 1; st.Calls != want {
				t.Fatalf("calls started in %s at %v/s: got %d, want %d", span, rate, st.Calls, want)
			}
			type life struct{ steps []string }
			calls := map[string]*life{}
			var order []string
			for i, ev := range evs {
				for _, k := range []string{"model", "reseller", "domain", "user"} {
					if ev[k] == nil {
						t.Fatalf("event %d lacks %q: %v", i, k, ev)
					}
				}
				id, _ := ev["callid"].(string)
				switch ev["model"] {
				case "presence":
					continue
				case "call":
					if calls[id] == nil {
						calls[id] = &life{}
						order = append(order, id)
					}
					step := ev["event"].(string)
					if step == "end" && ev["remove"] != "yes" {
						t.Errorf("call %s: end without \"remove\":\"yes\": %v", id, ev)
					}
					if step != "end" && ev["remove"] != nil {
						t.Errorf("call %s: %s with remove: %v", id, step, ev)
					}
					calls[id].steps = append(calls[id].steps, step)
				case "cdr":
					if calls[id] == nil {
						t.Fatalf("cdr of unknown call %s", id)
					}
					calls[id].steps = append(calls[id].steps, "cdr")
				default:
					t.Fatalf("unexpected model %v", ev["model"])
				}
			}
			if uint64(len(calls)) != st.Calls {
				t.Fatalf("calls with events: %d, started: %d", len(calls), st.Calls)
			}
			ended := 0
			for _, id := range order {
				s := calls[id].steps
				switch {
				case len(s) == 4 && s[0] == "start" && s[1] == "answer" && s[2] == "end" && s[3] == "cdr",
					len(s) == 3 && s[0] == "start" && s[1] == "end" && s[2] == "cdr":
					ended++
				case len(s) == 1 && s[0] == "start", len(s) == 2 && s[0] == "start" && s[1] == "answer":
					// still live
				default:
					t.Errorf("call %s: steps %v", id, s)
				}
			}
			if live := int(st.Calls) - ended; live != st.Live {
				t.Errorf("live calls: Stats says %d, events say %d", st.Live, live)
			}
			// A call lasts at most 2 s of ringing and 6 s of talk: all
			// but the last 8 s worth of calls have ended.
			if maxLive := int(8*rate) + 2; st.Live > maxLive {
				t.Errorf("%d calls live, want at most %d", st.Live, maxLive)
			}
		})
	}
}

func TestSameSeedSamePlan(t *testing.T) {
	_, a := play(t, Options{Seed: 42}, 10*time.Second, 100*time.Millisecond)
	_, b := play(t, Options{Seed: 42}, 10*time.Second, 2500*time.Millisecond)
	if len(a) != len(b) {
		t.Fatalf("same seed, other ticks: %d events vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i]["callid"] != b[i]["callid"] || a[i]["model"] != b[i]["model"] || a[i]["event"] != b[i]["event"] {
			t.Fatalf("event %d differs: %v vs %v", i, a[i], b[i])
		}
	}
}

func TestRunEmitsAndCounts(t *testing.T) {
	p := New(Options{Rate: 50, Tick: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var got int
	fail := true
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx, func(_ context.Context, evs []Event) error {
			mu.Lock()
			defer mu.Unlock()
			if fail { // the first emit fails
				fail = false
				return errors.New("ingest down")
			}
			got += len(evs)
			return nil
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := got
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run emitted %d events in 10s, want 20", n)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	cancel()
	<-done
	st := p.Stats()
	mu.Lock()
	defer mu.Unlock()
	if st.Events != uint64(got) || st.EmitErrors != 1 || st.LastError != "ingest down" {
		t.Fatalf("stats %+v, emitted %d, want 1 emit error", st, got)
	}
}
