//! ISO 8601 durations (`PT3H`, `PT90M`, `P1D`), the way Azure's JIT API writes a port's
//! maximum request time; the REST API reads and writes them so Azure scripts port as-is.
//!
//! Only the calendar-free designators are accepted (days, hours, minutes, seconds): a
//! month or a year has no fixed length, and a JIT window is at most a day anyway.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IsoDurationError {
    #[error("Write a duration in ISO 8601 form, e.g. PT3H, PT30M or PT1H30M.")]
    Malformed,
    #[error("Years, months and weeks are not allowed in a duration; use days, hours, minutes.")]
    Calendar,
    #[error("The duration is too long.")]
    TooLong,
}

/// Seconds in an ISO 8601 duration such as `PT1H30M` or `P1DT2H`. Case-insensitive;
/// whole numbers only.
pub fn parse_iso_duration(raw: &str) -> Result<i64, IsoDurationError> {
    let s = raw.trim().to_ascii_uppercase();
    let rest = s.strip_prefix('P').ok_or(IsoDurationError::Malformed)?;
    if rest.is_empty() {
        return Err(IsoDurationError::Malformed);
    }
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return Err(IsoDurationError::Malformed),
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total: i64 = 0;
    total = add_parts(total, date, &[('D', 86_400)], true)?;
    if let Some(time) = time {
        total = add_parts(total, time, &[('H', 3600), ('M', 60), ('S', 1)], false)?;
    }
    Ok(total)
}

/// Adds `12H30M`-like parts whose designators appear in `units` order, each at most once.
fn add_parts(
    mut total: i64,
    text: &str,
    units: &[(char, i64)],
    date_part: bool,
) -> Result<i64, IsoDurationError> {
    let mut next_unit = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            if digits.len() >= 9 {
                return Err(IsoDurationError::TooLong);
            }
            digits.push(c);
            continue;
        }
        if date_part && matches!(c, 'Y' | 'W' | 'M') {
            return Err(IsoDurationError::Calendar);
        }
        let Some(pos) = units[next_unit..].iter().position(|(u, _)| *u == c) else {
            return Err(IsoDurationError::Malformed);
        };
        if digits.is_empty() {
            return Err(IsoDurationError::Malformed);
        }
        let n: i64 = digits.parse().map_err(|_| IsoDurationError::Malformed)?;
        let unit = units[next_unit + pos].1;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(IsoDurationError::TooLong)?;
        next_unit += pos + 1;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(IsoDurationError::Malformed);
    }
    Ok(total)
}

/// The shortest ISO 8601 form of a non-negative number of seconds: `PT3H`, `PT1H30M`,
/// `P1D`, `PT0S`.
pub fn format_iso_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs == 0 {
        return "PT0S".into();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3600,
        (secs % 3600) / 60,
        secs % 60,
    );
    let mut out = String::from("P");
    if d > 0 {
        out.push_str(&format!("{d}D"));
    }
    if h + m + s > 0 {
        out.push('T');
        for (n, u) in [(h, 'H'), (m, 'M'), (s, 'S')] {
            if n > 0 {
                out.push_str(&format!("{n}{u}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn azure_style_durations_parse() {
        assert_eq!(parse_iso_duration("PT3H"), Ok(3 * 3600));
        assert_eq!(parse_iso_duration("PT30M"), Ok(1800));
        assert_eq!(parse_iso_duration("PT1H30M"), Ok(5400));
        assert_eq!(parse_iso_duration("pt5m"), Ok(300));
        assert_eq!(parse_iso_duration("P1D"), Ok(86_400));
        assert_eq!(parse_iso_duration("P1DT2H"), Ok(93_600));
        assert_eq!(parse_iso_duration("PT90S"), Ok(90));
        assert_eq!(parse_iso_duration(" PT24H "), Ok(86_400));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "", "P", "PT", "3H", "PT3", "PTH", "PT3H3H", "PT3M3H", "PT1.5H", "PT-1H", "P1H",
            "PTxH", "T3H",
        ] {
            assert_eq!(
                parse_iso_duration(bad),
                Err(IsoDurationError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(parse_iso_duration("P1M"), Err(IsoDurationError::Calendar));
        assert_eq!(parse_iso_duration("P1Y"), Err(IsoDurationError::Calendar));
        assert_eq!(parse_iso_duration("P1W"), Err(IsoDurationError::Calendar));
        assert_eq!(
            parse_iso_duration("PT9999999999H"),
            Err(IsoDurationError::TooLong)
        );
    }

    #[test]
    fn durations_format_shortest() {
        assert_eq!(format_iso_duration(3 * 3600), "PT3H");
        assert_eq!(format_iso_duration(5400), "PT1H30M");
        assert_eq!(format_iso_duration(86_400), "P1D");
        assert_eq!(format_iso_duration(0), "PT0S");
        assert_eq!(format_iso_duration(61), "PT1M1S");
    }

    proptest! {
        #[test]
        fn formatting_then_parsing_gives_back_the_seconds(secs in 0i64..10_000_000) {
            prop_assert_eq!(parse_iso_duration(&format_iso_duration(secs)), Ok(secs));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,20}") {
            let _ = parse_iso_duration(&s);
        }
    }
}
