//! Number formatting for the results tables.

use std::time::Duration;

/// Milliseconds with microsecond resolution: `0.213`.
pub fn ms(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1e3)
}

/// A signed difference in milliseconds: `+0.150`, `-0.020`.
pub fn signed_ms(difference: f64) -> String {
    format!("{difference:+.3}")
}

/// An integer with thousands separators: `10,000`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A rate rounded to a whole number, with separators.
pub fn rate(per_second: f64) -> String {
    thousands(per_second.max(0.0).round() as u64)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// KiB as MiB with one decimal: `61.4`.
pub fn mib_text(kib: u64) -> String {
    format!("{:.1}", mib(kib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_for_tables() {
        assert_eq!(ms(Duration::from_micros(213)), "0.213");
        assert_eq!(signed_ms(0.15), "+0.150");
        assert_eq!(signed_ms(-0.02), "-0.020");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(rate(4999.6), "5,000");
        assert_eq!(mib_text(153_600), "150.0");
    }
}
