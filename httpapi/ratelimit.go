package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token-bucket limit: PerSecond requests per second on average,
// bursts of up to Burst. The zero Rate means no limit.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Enabled reports whether the rate limits anything.
func (r Rate) Enabled() bool { return r.PerSecond > 0 && r.Burst > 0 }

// maxLimiterKeys bounds the keys (tokens, source addresses) a limiter
// tracks. Beyond it, idle keys are evicted first (their buckets are full,
// so forgetting them changes nothing), then the least recently seen.
const maxLimiterKeys = 10000

// keyedLimiter is one token bucket per key, in a bounded map.
type keyedLimiter struct {
	rate Rate
	now  func() time.Time
	mu   sync.Mutex
	keys map[string]*limiterEntry
	// idle is how long a bucket takes to refill completely: an entry
	// unseen for that long is full and can go.
	idle time.Duration
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newKeyedLimiter(r Rate) *keyedLimiter {
	if !r.Enabled() {
		return nil
	}
	idle := time.Duration(float64(r.Burst) / r.PerSecond * float64(time.Second))
	return &keyedLimiter{rate: r, now: time.Now, keys: map[string]*limiterEntry{}, idle: max(idle, time.Second)}
}

// allow takes one request for key; when the bucket is empty it returns
// false and how long until a request would pass.
func (k *keyedLimiter) allow(key string) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	now := k.now()
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.keys[key]
	if !ok {
		if len(k.keys) >= maxLimiterKeys {
			k.evict(now)
		}
		e = &limiterEntry{lim: rate.NewLimiter(rate.Limit(k.rate.PerSecond), k.rate.Burst)}
		k.keys[key] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// evict makes room: every idle entry goes; if none is idle, the least
// recently seen one.
func (k *keyedLimiter) evict(now time.Time) {
	var oldest string
	var oldestSeen time.Time
	for key, e := range k.keys {
		if now.Sub(e.seen) >= k.idle {
			delete(k.keys, key)
			continue
		}
		if oldest == "" || e.seen.Before(oldestSeen) {
			oldest, oldestSeen = key, e.seen
		}
	}
	if len(k.keys) >= maxLimiterKeys && oldest != "" {
		delete(k.keys, oldest)
	}
}

// size is the number of tracked keys (for tests).
func (k *keyedLimiter) size() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.keys)
}

// retryAfter is the Retry-After value (whole seconds, at least 1) for a
// wait of d.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// tooMany answers 429 with Retry-After in the API's JSON error shape.
func tooMany(w http.ResponseWriter, d time.Duration, what string) {
	w.Header().Set("Retry-After", retryAfter(d))
	wsFail(w, http.StatusTooManyRequests, "too many requests: "+what+"; retry after "+retryAfter(d)+"s")
}
