package stats

import (
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMinutes(t *testing.T) {
	start := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		run  func(m *Minutes, c *clock)
		// want maps minutes ago (0 = current) to counts; others are zero.
		want map[int]Minute
	}{
		{"empty", func(*Minutes, *clock) {}, nil},
		{"one minute", func(m *Minutes, _ *clock) {
			m.Delivered("s", 3)
			m.Delivered("s", 2)
			m.Failed("s")
			m.Delivered("other", 7)
		}, map[int]Minute{0: {Delivered: 5, Posts: 2, Failed: 1}}},
		{"spread", func(m *Minutes, c *clock) {
			m.Delivered("s", 1)
			c.add(time.Minute)
			m.Failed("s")
			m.Failed("s")
			c.add(2 * time.Minute)
			m.Delivered("s", 4)
		}, map[int]Minute{3: {Delivered: 1, Posts: 1}, 2: {Failed: 2}, 0: {Delivered: 4, Posts: 1}}},
		{"older than the window is gone", func(m *Minutes, c *clock) {
			m.Delivered("s", 9)
			c.add(Window * time.Minute)
			m.Failed("s")
		}, map[int]Minute{0: {Failed: 1}}},
		{"a reused bucket starts from zero", func(m *Minutes, c *clock) {
			m.Delivered("s", 9)
			c.add((Window - 1) * time.Minute)
			m.Failed("s")
			c.add(time.Minute)
			m.Delivered("s", 1)
		}, map[int]Minute{1: {Failed: 1}, 0: {Delivered: 1, Posts: 1}}},
		{"negative n counts the post only", func(m *Minutes, _ *clock) {
			m.Delivered("s", -1)
		}, map[int]Minute{0: {Posts: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: start}
			m := New(c.now)
			tc.run(m, c)
			got := m.Last("s")
			if len(got) != Window {
				t.Fatalf("len = %d, want %d", len(got), Window)
			}
			nowMin := c.now().Unix() / 60
			for i, g := range got {
				ago := Window - 1 - i
				w := tc.want[ago]
				w.Start = (nowMin - int64(ago)) * 60000
				if g != w {
					t.Errorf("%d minutes ago: got %+v, want %+v", ago, g, w)
				}
			}
		})
	}
}

func TestSweepForgetsIdle(t *testing.T) {
	c := &clock{t: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)}
	m := New(c.now)
	m.Delivered("old", 1)
	c.add(Window * time.Minute)
	m.Delivered("new", 1)
	m.mu.Lock()
	_, hasOld := m.subs["old"]
	n := len(m.subs)
	m.mu.Unlock()
	if hasOld || n != 1 {
		t.Fatalf("after an idle hour: old kept=%v, %d subscriptions; want only new", hasOld, n)
	}
}

func TestNilIgnores(t *testing.T) {
	var m *Minutes
	m.Delivered("s", 1)
	m.Failed("s")
	got := m.Last("s")
	if len(got) != Window {
		t.Fatalf("len = %d", len(got))
	}
	for _, g := range got {
		if g.Delivered+g.Posts+g.Failed != 0 {
			t.Fatalf("nil counter counted: %+v", g)
		}
	}
}

func TestConcurrent(t *testing.T) {
	m := New(nil)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				m.Delivered("s", 1)
				m.Failed("s")
			}
		}()
	}
	wg.Wait()
	var d, f uint64
	for _, g := range m.Last("s") {
		d += g.Delivered
		f += g.Failed
	}
	if d != 4000 || f != 4000 {
		t.Fatalf("delivered %d failed %d, want 4000 each", d, f)
	}
}
