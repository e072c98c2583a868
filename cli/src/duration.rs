//! Durations as people type them on a command line (`90m`, `1h`, `1h30m`, `2d`) or as
//! ISO 8601 (`PT1H`), turned into the ISO 8601 form the API takes.

/// Seconds in `1h30m`, `45m`, `2d`, `300s` or an ISO 8601 duration such as `PT1H30M`.
pub fn parse(raw: &str) -> Result<u64, String> {
    let s = raw.trim().to_ascii_lowercase();
    let bad = || format!("'{raw}' is not a duration; write e.g. 30m, 1h, 1h30m or PT1H");
    let body = if let Some(iso) = s.strip_prefix('p') {
        // Only days before the T: months and years have no fixed length.
        let date = iso.split('t').next().unwrap_or("");
        if date.chars().any(|c| c.is_ascii_alphabetic() && c != 'd') {
            return Err(bad());
        }
        iso.replace('t', "")
    } else {
        s.clone()
    };
    if body.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_rank = usize::MAX;
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, unit) = match c {
            'd' => (0, 86_400),
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(bad()),
        };
        if digits.is_empty() || digits.len() > 6 || (last_rank != usize::MAX && rank <= last_rank) {
            return Err(bad());
        }
        total += digits.parse::<u64>().map_err(|_| bad())? * unit;
        digits.clear();
        last_rank = rank;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// The ISO 8601 form of a number of seconds: `PT1H30M`.
pub fn iso(secs: u64) -> String {
    if secs == 0 {
        return "PT0S".into();
    }
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
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

    #[test]
    fn command_line_durations_parse() {
        assert_eq!(parse("1h"), Ok(3600));
        assert_eq!(parse("90m"), Ok(5400));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse("2d"), Ok(172_800));
        assert_eq!(parse("PT3H"), Ok(10_800));
        assert_eq!(parse("pt1h5m"), Ok(3900));
        for bad in ["", "h", "1x", "30", "1m1h", "1h1h", "-1h", "1.5h", "P1M"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn iso_form_is_shortest() {
        assert_eq!(iso(3600), "PT1H");
        assert_eq!(iso(5400), "PT1H30M");
        assert_eq!(iso(86_400), "P1D");
    }
}
