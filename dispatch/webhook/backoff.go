package webhook

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry timing (DESIGN.md "Webhook delivery").
const (
	BackoffBase   = 1 * time.Second  // first retry delay
	BackoffMax    = 60 * time.Second // cap of the doubling, before jitter
	BackoffJitter = 0.2              // ± fraction applied after the cap

	RetryAfterMin = 1 * time.Second  // Retry-After is clamped to
	RetryAfterMax = 10 * time.Minute // [RetryAfterMin, RetryAfterMax]
)

// Backoff is the delay before retry number attempt (1 for the first retry):
// 1s, 2s, 4s … doubling up to 60s, then multiplied by a jitter factor in
// [0.8, 1.2) drawn from rnd (a [0,1) source; nil uses math/rand/v2).
// Attempts below 1 count as 1. So a retry never waits more than 72s.
func Backoff(attempt int, rnd func() float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := BackoffMax
	if attempt <= 7 { // 1s<<6 = 64s is already past the cap
		d = min(BackoffBase<<(attempt-1), BackoffMax)
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	f := 1 - BackoffJitter + 2*BackoffJitter*rnd()
	return time.Duration(float64(d) * f)
}

// honoursRetryAfter reports whether a status's Retry-After header is used.
func honoursRetryAfter(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// ParseRetryAfter reads a Retry-After header value, delay-seconds or an HTTP
// date (relative to now), clamped to [RetryAfterMin, RetryAfterMax]. ok is
// false when the value is absent or unreadable (use Backoff then).
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case secs < 0:
			return 0, false
		case secs > int64(RetryAfterMax/time.Second):
			return RetryAfterMax, true
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, RetryAfterMin), RetryAfterMax), true
}
