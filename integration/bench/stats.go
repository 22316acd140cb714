package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// percentile returns the q-quantile (0 < q <= 1) of sorted, an ascending
// slice, by the nearest-rank method: the smallest sample such that at least
// q of all samples are less than or equal to it. q <= 0 gives the minimum,
// q >= 1 the maximum, an empty slice 0.
func percentile(sorted []int64, q float64) int64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if q <= 0 || math.IsNaN(q) {
		return sorted[0]
	}
	if q >= 1 {
		return sorted[n-1]
	}
	i := int(math.Ceil(q*float64(n))) - 1
	i = max(0, min(i, n-1))
	return sorted[i]
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	// Count is how many values were observed; Samples how many of them the
	// percentiles were computed from (fewer only when a reservoir was
	// full; the max is always exact).
	Count   int64   `json:"count"`
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
	Mean    float64 `json:"mean_ms"`
}

// ms converts nanoseconds to milliseconds rounded to microseconds.
func ms(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }

// round3 rounds to three decimals (for rates and ratios in the output).
func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1e3) / 1e3
}

// summarize sorts samples (nanoseconds) in place and describes them. count
// is the number of observations (>= len(samples)), maxNS the exact maximum
// (used when larger than the largest sample).
func summarize(samples []int64, count int64, maxNS int64) Latency {
	slices.Sort(samples)
	l := Latency{Count: max(count, int64(len(samples))), Samples: len(samples)}
	if len(samples) == 0 {
		return l
	}
	var sum float64
	for _, v := range samples {
		sum += float64(v)
	}
	l.P50 = ms(percentile(samples, 0.50))
	l.P90 = ms(percentile(samples, 0.90))
	l.P99 = ms(percentile(samples, 0.99))
	l.P999 = ms(percentile(samples, 0.999))
	l.Max = ms(max(samples[len(samples)-1], maxNS))
	l.Mean = ms(int64(sum / float64(len(samples))))
	return l
}

// sampler collects int64 values, keeping at most limit of them: beyond
// that, a uniform random sample (reservoir sampling, algorithm R), so
// memory stays bounded however long a run is. Not safe for concurrent use.
type sampler struct {
	limit int
	n     int64
	max   int64
	s     []int64
	rng   *rand.Rand
}

func newSampler(limit int, seed uint64) *sampler {
	return &sampler{limit: max(1, limit), max: math.MinInt64, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

func (s *sampler) add(v int64) {
	s.n++
	if v > s.max {
		s.max = v
	}
	if len(s.s) < s.limit {
		s.s = append(s.s, v)
		return
	}
	if j := s.rng.Int64N(s.n); j < int64(s.limit) {
		s.s[j] = v
	}
}

// mergeSamplers summarizes several samplers as one distribution. When some
// of them dropped values, each one's kept samples are weighted equally,
// which is close enough for the sizes used here (every sampler sees a
// similar share of the traffic).
func mergeSamplers(ss ...*sampler) Latency {
	var all []int64
	var n int64
	mx := int64(math.MinInt64)
	for _, s := range ss {
		if s == nil {
			continue
		}
		all = append(all, s.s...)
		n += s.n
		mx = max(mx, s.max)
	}
	return summarize(all, n, mx)
}

// rate is n events over d, per second.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 || n <= 0 {
		return 0
	}
	return round3(float64(n) / d.Seconds())
}
