//! `resource.Quantity` strings as integers: milli-units for CPU, units (bytes, counts) for
//! everything else, both rounded up like upstream `MilliValue()` and `Value()`.

/// Nano-units per unit.
const NANO: i128 = 1_000_000_000;

/// The quantity in nano-units, or None when `s` is not a quantity.
fn nano(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let (negative, s) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_part.contains('.') {
        return None;
    }
    // The mantissa as an integer and its decimal exponent.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut exponent: i32 = -(frac_part.len() as i32);
    let mut binary_shift: u32 = 0;
    match suffix {
        "" => {}
        "n" => exponent -= 9,
        "u" => exponent -= 6,
        "m" => exponent -= 3,
        "k" => exponent += 3,
        "M" => exponent += 6,
        "G" => exponent += 9,
        "T" => exponent += 12,
        "P" => exponent += 15,
        "E" => exponent += 18,
        "Ki" => binary_shift = 10,
        "Mi" => binary_shift = 20,
        "Gi" => binary_shift = 30,
        "Ti" => binary_shift = 40,
        "Pi" => binary_shift = 50,
        "Ei" => binary_shift = 60,
        s if s.starts_with(['e', 'E']) => exponent += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    // Keep the mantissa within i128: drop digits beyond 30, rounding up.
    let (mantissa_digits, dropped) = if digits.len() > 30 {
        (&digits[..30], digits.len() - 30)
    } else {
        (digits, 0)
    };
    let mut mantissa: i128 = if mantissa_digits.is_empty() {
        0
    } else {
        mantissa_digits.parse().ok()?
    };
    if dropped > 0 && digits[30..].bytes().any(|b| b != b'0') {
        mantissa += 1;
    }
    exponent += dropped as i32 + 9; // to nano-units
    let mut value = mantissa;
    if binary_shift > 0 {
        value = value.checked_mul(1i128 << binary_shift)?;
    }
    if exponent >= 0 {
        for _ in 0..exponent {
            value = value.checked_mul(10)?;
        }
    } else {
        let divisor = 10i128.checked_pow((-exponent) as u32);
        value = match divisor {
            Some(d) => (value + d - 1) / d,
            None => i128::from(value > 0),
        };
    }
    Some(if negative { -value } else { value })
}

fn ceil_div(v: i128, d: i128) -> i128 {
    if v >= 0 {
        (v + d - 1) / d
    } else {
        v / d
    }
}

fn clamp(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Milli-units, rounded up (upstream `MilliValue()`): "100m" -> 100, "1" -> 1000.
pub fn milli_value(s: &str) -> Option<i64> {
    nano(s).map(|n| clamp(ceil_div(n, NANO / 1000)))
}

/// Units, rounded up (upstream `Value()`): "1Ki" -> 1024, "1500m" -> 2.
pub fn value(s: &str) -> Option<i64> {
    nano(s).map(|n| clamp(ceil_div(n, NANO)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(milli_value("100m"), Some(100));
        assert_eq!(milli_value("1"), Some(1000));
        assert_eq!(milli_value("0.5"), Some(500));
        assert_eq!(milli_value("0.1"), Some(100));
        assert_eq!(milli_value("1.5"), Some(1500));
        assert_eq!(milli_value("250000u"), Some(250));
        assert_eq!(milli_value("1n"), Some(1));
        assert_eq!(milli_value("2k"), Some(2_000_000));
        assert_eq!(milli_value("0"), Some(0));
        assert_eq!(milli_value("1e3"), Some(1_000_000));
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(value("1Ki"), Some(1024));
        assert_eq!(value("8Gi"), Some(8 * 1024 * 1024 * 1024));
        assert_eq!(value("128974848"), Some(128_974_848));
        assert_eq!(value("129e6"), Some(129_000_000));
        assert_eq!(value("129M"), Some(129_000_000));
        assert_eq!(value("123Mi"), Some(123 * 1024 * 1024));
        assert_eq!(value("1.5Gi"), Some(1_610_612_736));
        assert_eq!(value("1500m"), Some(2));
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("1Ei"), Some(1 << 60));
    }

    #[test]
    fn invalid_quantities() {
        for bad in ["", "abc", "1Qi", "1..2", ".", "m"] {
            assert_eq!(value(bad), None, "{bad:?}");
        }
    }
}
