//! The medians the sweeps report, and how far each can be trusted.

/// The middle value (the mean of the two middle ones for an even count); NaN if empty.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A 95% confidence interval of the median, free of any assumed distribution: the values of
/// `values` at ranks n/2 − 1.96·√n/2 and 1 + n/2 + 1.96·√n/2, rounded (Conover, *Practical
/// Nonparametric Statistics*). The rounds of a sweep are noisy (a slice's rate spreads 10–30%
/// on a shared machine) and not normal, so the interval comes from the ranks, not a deviation.
/// With 45 rounds it spans ranks 16–30; an empty slice gives NaNs.
pub fn median_interval(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let half = n as f64 / 2.0;
    // Ranks count from 1; clamped to the values there are.
    let rank = |r: f64| (r.round() as usize).clamp(1, n) - 1;
    (
        values[rank(half - half_width)],
        values[rank(half + 1.0 + half_width)],
    )
}
