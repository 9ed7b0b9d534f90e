//! Latency recording: an HDR histogram in microseconds, summarised as percentiles in
//! milliseconds.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// A latency histogram. Records from 1 µs to one hour with 3 significant digits.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        // Bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Self(histogram)
    }

    pub fn record(&mut self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        // `saturating_record` clamps to the highest trackable value instead of failing.
        self.0.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail; a failure would only lose samples.
        let _ = self.0.add(&other.0);
    }

    /// The recorded values as (microseconds, count) pairs, for sending to another process.
    pub fn to_pairs(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// The histogram [`to_pairs`](Self::to_pairs) came from.
    pub fn from_pairs(pairs: &[(u64, u64)]) -> Self {
        let mut latencies = Self::new();
        for &(micros, count) in pairs {
            // Out-of-range values are clamped, as in `record`.
            let _ = latencies.0.record_n(micros.clamp(1, 3_600_000_000), count);
        }
        latencies
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn summary(&self) -> Percentiles {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if self.0.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: self.0.len(),
            p50_ms: ms(self.0.value_at_quantile(0.50)),
            p95_ms: ms(self.0.value_at_quantile(0.95)),
            p99_ms: ms(self.0.value_at_quantile(0.99)),
            max_ms: ms(self.0.max()),
            mean_ms: self.0.mean() / 1000.0,
        }
    }

    /// How many samples fall in each of `buckets` equal-width bins from 0 to the maximum, as
    /// (upper bound in ms, count).
    pub fn bins(&self, buckets: usize) -> Vec<(f64, u64)> {
        self.bins_up_to(self.0.max(), buckets)
    }

    /// `buckets` equal-width bins from 0 to the 99th percentile, then one bin for the rest up
    /// to the maximum (if any sample is there). A sustained run's tail is long; bins up to the
    /// maximum would put nearly everything in the first one.
    pub fn bins_to_p99(&self, buckets: usize) -> Vec<(f64, u64)> {
        // The bucket's highest equivalent value, so that the p99 sample itself is inside.
        let p99 = self.0.value_at_quantile(0.99);
        self.bins_up_to(self.0.highest_equivalent(p99), buckets)
    }

    fn bins_up_to(&self, ceiling_us: u64, buckets: usize) -> Vec<(f64, u64)> {
        if self.0.is_empty() || buckets == 0 {
            return Vec::new();
        }
        let ceiling = ceiling_us.max(1);
        let width = ceiling.div_ceil(buckets as u64).max(1);
        let mut bins = vec![0u64; buckets];
        let mut above = 0;
        for value in self.0.iter_recorded() {
            let micros = value.value_iterated_to();
            if micros > width * buckets as u64 {
                above += value.count_at_value();
            } else {
                let index = ((micros / width) as usize).min(buckets - 1);
                bins[index] += value.count_at_value();
            }
        }
        let mut bins: Vec<(f64, u64)> = bins
            .into_iter()
            .enumerate()
            .map(|(i, count)| (((i as u64 + 1) * width) as f64 / 1000.0, count))
            .collect();
        if above > 0 {
            bins.push((self.0.max() as f64 / 1000.0, above));
        }
        bins
    }
}

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    /// The element-wise worse of two distributions, counts summed: an upper bound when the
    /// samples behind them are not at hand.
    pub fn worst(&self, other: &Percentiles) -> Percentiles {
        Percentiles {
            count: self.count + other.count,
            p50_ms: self.p50_ms.max(other.p50_ms),
            p95_ms: self.p95_ms.max(other.p95_ms),
            p99_ms: self.p99_ms.max(other.p99_ms),
            max_ms: self.max_ms.max(other.max_ms),
            mean_ms: self.mean_ms.max(other.mean_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_values() {
        let mut l = Latencies::new();
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.summary();
        assert_eq!(p.count, 100);
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        let bins = l.bins(4);
        assert_eq!(bins.iter().map(|b| b.1).sum::<u64>(), 100);
        let to_p99 = l.bins_to_p99(4);
        assert_eq!(
            to_p99.iter().map(|b| b.1).sum::<u64>(),
            100,
            "no sample lost"
        );
        // 99 samples up to p99 in four bins, the 100 ms one in the tail bin.
        assert_eq!(to_p99.len(), 5, "{to_p99:?}");
        assert_eq!(to_p99[4].1, 1);
        assert!(
            (to_p99[4].0 - 100.0).abs() < 0.1,
            "the tail ends at the maximum"
        );
    }
}
