package match

import (
	"fmt"
	"sync"
	"testing"
)

func TestOrigIDCollapser(t *testing.T) {
	type step struct {
		body string
		want bool
	}
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"first event passes, repeats collapse", 0, []step{
			{`{"model":"call","orig_callid":"c1","orig_from":"100","term_to":"200"}`, true},
			{`{"model":"call","orig_callid":"c1","orig_from":"100","term_to":"201"}`, false},
			{`{"model":"call","orig_callid":"c1","term_state":"ringing"}`, false},
		}},
		{"orig_* change passes", 0, []step{
			{`{"model":"call","orig_callid":"c1","orig_state":"dialing"}`, true},
			{`{"model":"call","orig_callid":"c1","orig_state":"active"}`, true},
			{`{"model":"call","orig_callid":"c1","orig_state":"active","term_x":"1"}`, false},
			{`{"model":"call","orig_callid":"c1","orig_state":"active","orig_new":"x"}`, true},
			{`{"model":"call","orig_callid":"c1","orig_new":"x"}`, false}, // absence is no change
		}},
		{"type change counts as change", 0, []step{
			{`{"model":"call","orig_callid":"c1","orig_n":"1"}`, true},
			{`{"model":"call","orig_callid":"c1","orig_n":1}`, true},
			{`{"model":"call","orig_callid":"c1","orig_n":1}`, false},
		}},
		{"removal passes and forgets", 0, []step{
			{`{"model":"call","orig_callid":"c1"}`, true},
			{`{"model":"call","orig_callid":"c1","remove":"yes"}`, true},
			{`{"model":"call","orig_callid":"c1"}`, true}, // a new call with a reused id
			{`{"model":"call","orig_callid":"c1","remove":"YES"}`, true},
			{`{"model":"call","orig_callid":"c1","remove":true}`, true},
			{`{"model":"call","orig_callid":"c1","remove":"no"}`, true}, // first again after removal
			{`{"model":"call","orig_callid":"c1","remove":"no"}`, false},
		}},
		{"calls are independent", 0, []step{
			{`{"model":"call","orig_callid":"c1"}`, true},
			{`{"model":"call","orig_callid":"c2"}`, true},
			{`{"model":"call","orig_callid":"c1"}`, false},
			{`{"model":"call","orig_callid":"c2"}`, false},
		}},
		{"no orig_callid cannot be collapsed", 0, []step{
			{`{"model":"call","callid":"x"}`, true},
			{`{"model":"call","callid":"x"}`, true},
		}},
		{"LRU forgets the least recently seen", 2, []step{
			{`{"model":"call","orig_callid":"c1"}`, true},
			{`{"model":"call","orig_callid":"c2"}`, true},
			{`{"model":"call","orig_callid":"c1"}`, false}, // c1 now most recent
			{`{"model":"call","orig_callid":"c3"}`, true},  // evicts c2
			{`{"model":"call","orig_callid":"c1"}`, false},
			{`{"model":"call","orig_callid":"c2"}`, true}, // forgotten: passes as a first event
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewOrigIDCollapser(tt.max)
			for i, st := range tt.steps {
				if got := c.Pass(mkEvent(t, st.body)); got != st.want {
					t.Fatalf("step %d %s: Pass = %v, want %v", i, st.body, got, st.want)
				}
			}
			limit := tt.max
			if limit <= 0 {
				limit = DefaultOrigIDCalls
			}
			if c.Len() > limit {
				t.Fatalf("Len %d over limit %d", c.Len(), limit)
			}
		})
	}
}

func TestOrigIDCollapserBounded(t *testing.T) {
	const limit = 50
	c := NewOrigIDCollapser(limit)
	for i := range 10 * limit {
		c.Pass(mkEvent(t, fmt.Sprintf(`{"model":"call","orig_callid":"c%d"}`, i)))
	}
	if c.Len() != limit {
		t.Fatalf("Len = %d, want %d", c.Len(), limit)
	}
}

func TestOrigIDCollapserConcurrent(t *testing.T) {
	c := NewOrigIDCollapser(16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				c.Pass(mkEvent(t, fmt.Sprintf(`{"model":"call","orig_callid":"c%d","orig_x":"%d"}`, (i+g)%32, i%3)))
			}
		})
	}
	wg.Wait()
}
