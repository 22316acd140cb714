package webhook

import (
	"net/http"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		attempt int
		rnd     float64
		want    time.Duration
	}{
		{0, 0.5, 1 * s},
		{1, 0.5, 1 * s},
		{2, 0.5, 2 * s},
		{3, 0.5, 4 * s},
		{4, 0.5, 8 * s},
		{5, 0.5, 16 * s},
		{6, 0.5, 32 * s},
		{7, 0.5, 60 * s},
		{8, 0.5, 60 * s},
		{1000, 0.5, 60 * s},
		{1 << 62, 0.5, 60 * s},
		{1, 0, 800 * time.Millisecond},
		{3, 0, 3200 * time.Millisecond},
		{7, 0, 48 * s},
		{1, 0.999999, 1199999800 * time.Nanosecond},
		{100, 0.75, 66 * s},
	}
	for _, tt := range tests {
		got := Backoff(tt.attempt, func() float64 { return tt.rnd })
		if d := got - tt.want; d > time.Microsecond || d < -time.Microsecond {
			t.Errorf("Backoff(%d, %v) = %v, want %v", tt.attempt, tt.rnd, got, tt.want)
		}
	}
	for attempt := 1; attempt < 20; attempt++ { // default source stays within ±20%
		base := min(time.Second<<(attempt-1), BackoffMax)
		if got := Backoff(attempt, nil); got < base*8/10 || got > base*12/10 {
			t.Errorf("Backoff(%d, nil) = %v outside ±20%% of %v", attempt, got, base)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header string
		want   time.Duration
		ok     bool
	}{
		{"absent", "", 0, false},
		{"seconds", "7", 7 * time.Second, true},
		{"spaces", " 30 ", 30 * time.Second, true},
		{"zero clamps up", "0", RetryAfterMin, true},
		{"huge clamps down", "99999999999999999", RetryAfterMax, true},
		{"just over max", "601", RetryAfterMax, true},
		{"negative", "-5", 0, false},
		{"fraction", "1.5", 0, false},
		{"garbage", "soon", 0, false},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), RetryAfterMin, true},
		{"far date", now.Add(24 * time.Hour).Format(http.TimeFormat), RetryAfterMax, true},
		{"rfc850 date", now.Add(time.Minute).Format("Monday, 02-Jan-06 15:04:05 GMT"), time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.header, now)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseRetryAfter(%q) = %v %v, want %v %v", tt.header, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestHonoursRetryAfter(t *testing.T) {
	for status, want := range map[int]bool{429: true, 502: true, 503: true, 504: true, 500: false, 410: false, 301: false, 200: false} {
		if got := honoursRetryAfter(status); got != want {
			t.Errorf("honoursRetryAfter(%d) = %v", status, got)
		}
	}
}
