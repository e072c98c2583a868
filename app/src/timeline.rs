//! The VM page's timeline: access windows over the last 7 days, and the windows booked
//! ahead, as an SVG drawn on the server, so it shows without JavaScript.

const WIDTH: f64 = 700.0;
const LEFT: f64 = 0.0;
const BAR_Y: f64 = 24.0;
const BAR_H: f64 = 22.0;
const HEIGHT: f64 = 64.0;
/// The narrowest a window is drawn, in viewBox units (about 0.9% of the width, some 6 px on
/// a wide card): at scale a five-minute grant in a two-week range is a fraction of a
/// pixel, and a bar nobody can see or hover says nothing happened.
const MIN_BAR_W: f64 = 6.0;
/// Room the labels take at font size 10: a day ("Sun 29") and "now".
const DAY_LABEL_W: f64 = 34.0;
const NOW_LABEL_W: f64 = 24.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// How far ahead the timeline reaches at most for booked windows (the longest lead time).
pub const AHEAD_MS: i64 = crate::domain::jit::MAX_LEAD_DAYS * 24 * 3600 * 1000;

/// `windows`: (start, end, user, status) in UTC ms; `[from, to)` is the range shown and
/// `now` is marked in it (`to` is later than `now` when windows are booked ahead).
pub fn timeline_svg(
    windows: &[(i64, i64, String, String)],
    from: i64,
    now: i64,
    to: i64,
) -> String {
    let span = (to - from).max(1) as f64;
    let x = |t: i64| LEFT + ((t.clamp(from, to) - from) as f64 / span) * WIDTH;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\" aria-labelledby=\"timeline-title\"><title id=\"timeline-title\">Access windows, last 7 days{}: {} window(s)</title>",
        if to > now { " and booked ahead" } else { "" },
        windows.len()
    );
    svg.push_str(&format!(
        "<rect x=\"0\" y=\"{BAR_Y}\" width=\"{WIDTH}\" height=\"{BAR_H}\" fill=\"#eef2f6\" stroke=\"#d0d7de\"/>"
    ));
    // With windows booked ahead, "now" is labelled in the top row, where a day label it
    // would cover gives way; the bottom row holds the range's two ends.
    let now_x = (to > now).then(|| x(now));
    let day = 24 * 3600 * 1000;
    let mut t = from - from.rem_euclid(day) + day;
    while t < to {
        let xi = x(t);
        let label = chrono::DateTime::from_timestamp_millis(t)
            .map(|d| d.format("%a %d").to_string())
            .unwrap_or_default();
        svg.push_str(&format!(
            "<line x1=\"{xi:.1}\" y1=\"{}\" x2=\"{xi:.1}\" y2=\"{}\" stroke=\"#c4ccd5\"/>",
            BAR_Y - 4.0,
            BAR_Y + BAR_H + 4.0,
        ));
        let (l1, l2) = (xi + 2.0, xi + 2.0 + DAY_LABEL_W);
        let clear_of_now =
            now_x.is_none_or(|xn| l2 < xn - NOW_LABEL_W / 2.0 || l1 > xn + NOW_LABEL_W / 2.0);
        if l2 <= WIDTH && clear_of_now {
            svg.push_str(&format!(
                "<text x=\"{l1:.1}\" y=\"14\" font-size=\"10\" fill=\"#57606a\">{label}</text>"
            ));
        }
        t += day;
    }
    for (start, end, user, status) in windows {
        let (mut x1, x2) = (x(*start), x(*end));
        let w = (x2 - x1).max(MIN_BAR_W);
        // A short window at the right edge grows leftwards, to stay inside the range.
        x1 = x1.min(WIDTH - w).max(0.0);
        // Booked windows (not open yet) are drawn hollow: they are a promise, not access.
        let booked = *start > now && matches!(status.as_str(), "approved" | "pending_approval");
        let colour = if booked {
            "#ffffff\" stroke=\"#1f4e79\" stroke-dasharray=\"3 2"
        } else if status == "active" {
            "#1a7f37"
        } else {
            "#1f4e79"
        };
        let class = if booked { "window booked" } else { "window" };
        svg.push_str(&format!(
            "<rect class=\"{class}\" x=\"{x1:.1}\" y=\"{BAR_Y}\" width=\"{w:.1}\" height=\"{BAR_H}\" fill=\"{colour}\">\
             <title>{} ({}): start {}, end {}</title></rect>",
            esc(user),
            esc(status),
            crate::model::format_utc(*start),
            crate::model::format_utc(*end),
        ));
    }
    if to > now {
        let xn = x(now);
        svg.push_str(&format!(
            "<line class=\"now\" x1=\"{xn:.1}\" y1=\"{}\" x2=\"{xn:.1}\" y2=\"{}\" stroke=\"#cf222e\" stroke-width=\"2\"/>\
             <text x=\"0\" y=\"{}\" font-size=\"10\" fill=\"#57606a\">{}</text>\
             <text x=\"{:.1}\" y=\"14\" font-size=\"10\" fill=\"#cf222e\" text-anchor=\"middle\">now</text>\
             <text x=\"{WIDTH}\" y=\"{}\" font-size=\"10\" fill=\"#57606a\" text-anchor=\"end\">{}</text></svg>",
            BAR_Y - 6.0,
            BAR_Y + BAR_H + 6.0,
            HEIGHT - 4.0,
            crate::model::format_utc(from),
            xn.clamp(NOW_LABEL_W / 2.0, WIDTH - NOW_LABEL_W / 2.0),
            HEIGHT - 4.0,
            crate::model::format_utc(to)
        ));
        return svg;
    }
    svg.push_str(&format!(
        "<text x=\"0\" y=\"{}\" font-size=\"10\" fill=\"#57606a\">{}</text><text x=\"{WIDTH}\" y=\"{}\" font-size=\"10\" \
         fill=\"#57606a\" text-anchor=\"end\">now</text></svg>",
        HEIGHT - 4.0,
        crate::model::format_utc(from),
        HEIGHT - 4.0
    ));
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn windows_are_drawn_inside_the_range_and_escaped() {
        let day = 24 * 3600 * 1000;
        let from = 10 * day;
        let svg = super::timeline_svg(
            &[(
                from + day,
                from + day + 3_600_000,
                "<bob>".into(),
                "expired".into(),
            )],
            from,
            from + 7 * day,
            from + 7 * day,
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("class=\"window\"").count(), 1);
        assert!(svg.contains("&lt;bob&gt;"));
        assert!(
            svg.contains("x=\"100.0\""),
            "one day of seven is 100 of 700 units: {svg}"
        );
    }

    #[test]
    fn a_short_window_is_drawn_wide_enough_to_see_and_says_when_it_was() {
        let day = 24 * 3600 * 1000;
        let now = 20 * day;
        let five_minutes = 5 * 60 * 1000;
        let svg = super::timeline_svg(
            &[
                (
                    now - 3 * day,
                    now - 3 * day + five_minutes,
                    "rita".into(),
                    "expired".into(),
                ),
                // The last five minutes of the range, at its right edge.
                (
                    now + 7 * day - five_minutes,
                    now + 7 * day,
                    "rita".into(),
                    "approved".into(),
                ),
            ],
            now - 7 * day,
            now,
            now + 7 * day,
        );
        // Five minutes of fourteen days is 0.17 units of 700.
        assert_eq!(svg.matches("width=\"6.0\"").count(), 2, "{svg}");
        assert!(svg.contains("class=\"window booked\" x=\"694.0\""), "{svg}");
        assert!(
            svg.contains(
                "<title>rita (expired): start 1970-01-18 00:00:00 UTC, end 1970-01-18 00:05:00 UTC</title>"
            ),
            "{svg}"
        );
    }

    #[test]
    fn a_day_label_that_would_run_past_the_right_edge_is_left_out() {
        let day = 24 * 3600 * 1000;
        let from = 10 * day + 3_600_000;
        let svg = super::timeline_svg(&[], from, from + 7 * day, from + 7 * day);
        // Day 17 starts an hour before the end, at 695.8 of 700: its line, no label.
        assert!(svg.contains("<line x1=\"695.8\""), "{svg}");
        assert!(!svg.contains("<text x=\"697.8\""), "{svg}");
        assert!(
            svg.contains("<text x=\"597.8\""),
            "the day before keeps its label: {svg}"
        );
    }

    #[test]
    fn windows_booked_ahead_widen_the_range_and_are_drawn_hollow_after_now() {
        let day = 24 * 3600 * 1000;
        let now = 20 * day;
        let svg = super::timeline_svg(
            &[(
                now + day,
                now + day + 3_600_000,
                "rita".into(),
                "approved".into(),
            )],
            now - 7 * day,
            now,
            now + 7 * day,
        );
        assert!(svg.contains("and booked ahead"));
        assert_eq!(svg.matches("class=\"window booked\"").count(), 1);
        assert!(
            svg.contains("class=\"now\" x1=\"350.0\""),
            "now in the middle: {svg}"
        );
        // The day that starts at now gives its label's place to "now".
        assert!(svg.contains("<text x=\"350.0\" y=\"14\" font-size=\"10\" fill=\"#cf222e\" text-anchor=\"middle\">now</text>"), "{svg}");
        assert!(!svg.contains("<text x=\"352.0\""), "{svg}");
    }
}
