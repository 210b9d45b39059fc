//! Kubernetes resource quantities (`100m`, `0.5`, `128Mi`, `1G`, `2e3`), read as the kubelet
//! reads them for CRI: rounded up to whole milli-units (CPU) or whole units (bytes).
//!
//! Grammar, from the API's `resource.Quantity`: an optional sign, a decimal number, then one
//! suffix: a binary SI one (`Ki Mi Gi Ti Pi Ei`), a decimal SI one (`n u m k M G T P E`) or a
//! decimal exponent (`e3`, `E-2`).

/// A quantity as an exact fraction: `numerator / denominator`, denominator > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quantity {
    numerator: i128,
    denominator: i128,
}

/// The binary SI suffixes, by power of 1024 (`Ki` = 1024¹ …).
const BINARY_SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// Largest power of ten a quantity may carry; beyond it the value is not a resource amount.
const MAX_EXPONENT: u32 = 30;

impl Quantity {
    /// Parses `text`; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("quantity {text:?} {why}");
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(bad("has no valid number"));
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_EXPONENT as usize {
            return Err(bad("is too large"));
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad("has no valid number"))?
        };
        let fraction_digits =
            u32::try_from(fraction.len()).map_err(|_| bad("has too many digits"))?;
        let mut q = Quantity {
            numerator: if negative { -mantissa } else { mantissa },
            denominator: pow10(fraction_digits).ok_or_else(|| bad("has too many digits"))?,
        };
        let scale = |q: Quantity, exponent: i32| -> Option<Quantity> {
            let factor = pow10(exponent.unsigned_abs())?;
            if exponent >= 0 {
                Some(Quantity {
                    numerator: q.numerator.checked_mul(factor)?,
                    ..q
                })
            } else {
                Some(Quantity {
                    denominator: q.denominator.checked_mul(factor)?,
                    ..q
                })
            }
        };
        let binary = BINARY_SUFFIXES
            .iter()
            .position(|s| *s == suffix)
            .map(|i| 1_i128 << (10 * (i + 1)));
        q = match suffix {
            "" => Some(q),
            _ if binary.is_some() => binary
                .and_then(|factor| q.numerator.checked_mul(factor))
                .map(|numerator| Quantity { numerator, ..q }),
            "n" => scale(q, -9),
            "u" => scale(q, -6),
            "m" => scale(q, -3),
            "k" => scale(q, 3),
            "M" => scale(q, 6),
            "G" => scale(q, 9),
            "T" => scale(q, 12),
            "P" => scale(q, 15),
            "E" => scale(q, 18),
            other => {
                let exponent = other
                    .strip_prefix(['e', 'E'])
                    .and_then(|e| e.parse::<i32>().ok())
                    .filter(|e| e.unsigned_abs() <= MAX_EXPONENT)
                    .ok_or_else(|| bad("has an unknown suffix"))?;
                scale(q, exponent)
            }
        }
        .ok_or_else(|| bad("is too large"))?;
        Ok(q)
    }

    /// The value in thousandths, rounded up (`0.1` → 100, `1m` → 1, `0.5m` → 1).
    pub(crate) fn milli_value(self) -> i64 {
        self.rounded_up(1000)
    }

    /// The value, rounded up (`1Ki` → 1024, `0.5` → 1).
    pub(crate) fn value(self) -> i64 {
        self.rounded_up(1)
    }

    fn rounded_up(self, unit: i128) -> i64 {
        let scaled = self.numerator.saturating_mul(unit);
        let value = scaled.div_euclid(self.denominator)
            + i128::from(scaled.rem_euclid(self.denominator) != 0);
        i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
    }
}

fn pow10(exponent: u32) -> Option<i128> {
    10_i128.checked_pow(exponent)
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    fn milli(text: &str) -> i64 {
        Quantity::parse(text).expect(text).milli_value()
    }

    fn value(text: &str) -> i64 {
        Quantity::parse(text).expect(text).value()
    }

    #[test]
    fn cpu_quantities_in_millicores() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("1.25"), 1250);
        assert_eq!(milli(".1"), 100);
        assert_eq!(milli("0.0001"), 1, "rounded up");
        assert_eq!(milli("500u"), 1, "rounded up");
        assert_eq!(milli("2e-3"), 2);
        assert_eq!(milli("+3"), 3000);
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(value("128Mi"), 128 << 20);
        assert_eq!(value("1Gi"), 1 << 30);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1.5Ki"), 1536);
        assert_eq!(value("64k"), 64_000);
        assert_eq!(value("1e3"), 1000);
        assert_eq!(value("1E6"), 1_000_000);
        assert_eq!(value("12345"), 12345);
        assert_eq!(value("0.5"), 1, "rounded up");
        assert_eq!(value("0"), 0);
    }

    #[test]
    fn bad_quantities_say_why() {
        for (text, why) in [
            ("", "has no valid number"),
            ("Mi", "has no valid number"),
            ("1.2.3", "has no valid number"),
            ("12MB", "has an unknown suffix"),
            ("1e99", "has an unknown suffix"),
            ("1x", "has an unknown suffix"),
            ("99999999999999999999999999999999999", "is too large"),
        ] {
            let err = Quantity::parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{err}");
        }
    }
}
