//! Resource quantities (`1Gi`, `500M`, `1.5e3`) as numbers, for comparing storage sizes.

/// The value of a quantity string, or `None` if it does not parse.
pub(crate) fn parse(quantity: &str) -> Option<f64> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let binary = |power: i32| 1024f64.powi(power);
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            10f64.powi(s[1..].parse().ok()?)
        }
        _ => return None,
    };
    Some(number * multiplier)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn suffixes() {
        assert_eq!(parse("1Gi"), Some(1073741824.0));
        assert_eq!(parse("500Mi"), Some(524288000.0));
        assert_eq!(parse("1G"), Some(1e9));
        assert_eq!(parse("1.5Ki"), Some(1536.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse("2E"), Some(2e18));
        assert_eq!(parse("100"), Some(100.0));
        assert_eq!(parse("1Qi"), None);
        assert_eq!(parse("Gi"), None);
    }
}
