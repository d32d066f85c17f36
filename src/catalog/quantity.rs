//! Kubernetes resource quantities (`100m`, `1.5Gi`, `2e3`): the API's grammar, so a bad size is
//! caught offline, and the value, so start scripts can size JVMs from the pod's limits.

/// The grammar, for messages.
pub const EXPECTED: &str = "a Kubernetes quantity like 500m, 2, 512Mi or 20Gi";

/// The quantity's value in base units (cores, bytes), or `None` when it does not parse.
pub fn parse(s: &str) -> Option<f64> {
    let digits_end = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || (*i == 0 && (*c == '+' || *c == '-'))))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let unsigned = number.trim_start_matches(['+', '-']);
    let valid_number = !unsigned.is_empty()
        && unsigned != "."
        && unsigned.matches('.').count() <= 1
        && number.len() - unsigned.len() <= 1;
    if !valid_number {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e = &exp[1..];
            let digits = e.trim_start_matches(['+', '-']);
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || e.len() - digits.len() > 1
            {
                return None;
            }
            10f64.powi(e.parse().ok()?)
        }
        _ => return None,
    };
    Some(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_api_grammar() {
        assert_eq!(parse("100m"), Some(0.1));
        assert_eq!(parse("2"), Some(2.0));
        assert_eq!(parse("512Mi"), Some(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse("1e3"), Some(1000.0));
        assert_eq!(parse(".5"), Some(0.5));
        assert_eq!(parse("+1k"), Some(1000.0));
        for bad in [
            "", "Gi", "1GB", "1.2.3", "--1", "1 Gi", "1e", "1mi", "ten", ".",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
