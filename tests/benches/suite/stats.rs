//! Several runs of one measurement, summarised as median with the spread.

use std::fmt;

#[derive(Debug, Clone, Default)]
pub struct Runs(Vec<f64>);

impl Runs {
    /// Runs `measure` `runs` times, printing each result as progress.
    pub fn collect(label: &str, runs: usize, mut measure: impl FnMut() -> f64) -> Self {
        let values = (1..=runs)
            .map(|run| {
                let value = measure();
                eprintln!("  {label}: run {run}/{runs}: {value:.2}");
                value
            })
            .collect();
        Self(values)
    }

    pub fn from_values(values: Vec<f64>) -> Self {
        Self(values)
    }

    fn sorted(&self) -> Vec<f64> {
        let mut values = self.0.clone();
        values.sort_by(f64::total_cmp);
        values
    }

    pub fn median(&self) -> f64 {
        let values = self.sorted();
        match values.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => values[n / 2],
            n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// Median and spread with `decimals` digits, e.g. `25,712 (24,905–26,101)`.
    pub fn show(&self, decimals: usize) -> String {
        if self.0.len() == 1 {
            return number(self.median(), decimals);
        }
        format!(
            "{} ({}–{})",
            number(self.median(), decimals),
            number(self.min(), decimals),
            number(self.max(), decimals)
        )
    }
}

impl fmt::Display for Runs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show(0))
    }
}

/// `value` with thousands separators and `decimals` digits after the point.
pub fn number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let text = format!("{value:.decimals$}");
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text.as_str(), None),
    };
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", whole),
    };
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match fraction {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// The `p`-quantile (0..=1) of sorted values.
pub fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}
