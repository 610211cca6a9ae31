//! Percentiles and min/mean/max, the numbers a run and a series of runs
//! are summed up with.

/// The `p`-th percentile (0–100) of sorted values, nearest-rank method;
/// `None` for no values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Minimum, mean and maximum of a series (the paper's way of reporting
/// repeated runs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for an empty series.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut n = 0usize;
        let mut sum = 0.0;
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for v in values {
            n += 1;
            sum += v;
            min = min.min(v);
            max = max.max(v);
        }
        (n > 0).then(|| Spread {
            min,
            mean: sum / n as f64,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), Some(2.0));
    }

    #[test]
    fn spread_of_a_series() {
        let s = Spread::of([1360.0, 1485.0, 1610.0]).unwrap();
        assert_eq!((s.min, s.max), (1360.0, 1610.0));
        assert!((s.mean - 1485.0).abs() < 1e-9);
        assert_eq!(Spread::of(std::iter::empty()), None);
    }
}
