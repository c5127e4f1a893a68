//! Latency percentiles and the small numeric helpers the summary needs. Pure.

use std::time::Duration;

/// Latencies of one run, in nanoseconds, in the order they were recorded.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples_ns: Vec<u64>,
}

/// What the summary prints about latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            samples_ns: Vec::with_capacity(n),
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.samples_ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Moves every sample of `other` into `self` (threads merge theirs).
    pub fn append(&mut self, mut other: Latencies) {
        self.samples_ns.append(&mut other.samples_ns);
    }

    pub fn len(&self) -> usize {
        self.samples_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_ns.is_empty()
    }

    /// p50/p99/max/mean, or `None` when nothing was recorded.
    pub fn summarize(mut self) -> Option<LatencySummary> {
        if self.samples_ns.is_empty() {
            return None;
        }
        self.samples_ns.sort_unstable();
        let s = &self.samples_ns;
        let sum: u128 = s.iter().map(|&v| u128::from(v)).sum();
        let mean = u64::try_from(sum / s.len() as u128).unwrap_or(u64::MAX);
        Some(LatencySummary {
            count: s.len(),
            p50: Duration::from_nanos(percentile(s, 50.0)),
            p99: Duration::from_nanos(percentile(s, 99.0)),
            max: Duration::from_nanos(*s.last().expect("checked non-empty above")),
            mean: Duration::from_nanos(mean),
        })
    }
}

/// Nearest-rank percentile of an ascending, non-empty slice: the smallest
/// value with at least `p` percent of the samples at or below it.
///
/// # Panics
/// If `sorted` is empty or `p` is outside `0..=100`.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    assert!((0.0..=100.0).contains(&p), "percentile {p} out of range");
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `count / secs`, 0 for a zero-length interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&v, 0.0), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        // 3 samples: p50 is the middle one, p99 the largest.
        assert_eq!(percentile(&[1, 2, 3], 50.0), 2);
        assert_eq!(percentile(&[1, 2, 3], 99.0), 3);
        // 1000 samples: p99 is the 990th, so 10 slow samples don't reach it.
        let mut v: Vec<u64> = vec![10; 990];
        v.extend([1_000; 10]);
        assert_eq!(percentile(&v, 99.0), 10);
        v.push(1_000);
        assert_eq!(percentile(&v, 99.0), 1_000);
    }

    #[test]
    fn summary_sorts_and_averages() {
        let mut l = Latencies::default();
        for us in [5, 1, 3, 2, 4] {
            l.record(Duration::from_micros(us));
        }
        let s = l.summarize().unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.p50, Duration::from_micros(3));
        assert_eq!(s.max, Duration::from_micros(5));
        assert_eq!(s.mean, Duration::from_micros(3));
        assert!(Latencies::default().summarize().is_none());
    }

    #[test]
    fn rate_of_zero_time_is_zero() {
        assert_eq!(rate(10, Duration::ZERO), 0.0);
        assert_eq!(rate(10, Duration::from_secs(2)), 5.0);
    }
}
