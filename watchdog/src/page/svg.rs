//! Inline SVG for the status page, built as strings: every piece of text
//! in them is escaped here, since the template inserts them as they are.

use std::fmt::Write;

use super::{DayBar, Series, shown_percent};
use crate::model::Health;

/// Width of one day's bar and the gap after it, in viewBox units.
const BAR: u32 = 8;
const STEP: u32 = 10;
const BARS_HEIGHT: u32 = 34;
/// The chart's viewBox: one unit per 5-minute point.
const CHART_HEIGHT: f64 = 60.0;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One bar per day, coloured by the worst state of the day, each with a
/// tooltip ("2026-11-20: 99.95% up"); the whole has a text alternative
/// naming the days that were not fully up.
pub fn bars(name: &str, days: &[DayBar], uptime_90d: Option<f64>) -> String {
    let width = STEP * days.len().max(1) as u32 - (STEP - BAR);
    let bad: Vec<String> = days
        .iter()
        .filter(|d| matches!(d.worst, Some(Health::Down | Health::Degraded)))
        .map(|d| format!("{} {} ({})", d.date, worst_word(d.worst), up_text(d)))
        .collect();
    let no_data = days.iter().filter(|d| d.no_data).count();
    let mut label = format!("{name}, last {} days: {} up overall", days.len(), shown_percent(uptime_90d));
    match bad.len() {
        0 => label.push_str("; no day with downtime"),
        n if n <= 10 => write!(label, "; {}", bad.join(", ")).unwrap(),
        n => write!(label, "; {n} days with problems, the latest {}", bad[n - 10..].join(", ")).unwrap(),
    }
    if no_data > 0 {
        write!(label, "; {no_data} days without data").unwrap();
    }
    let mut svg = String::with_capacity(90 * 80 + 400);
    write!(
        svg,
        r#"<svg class="bars" viewBox="0 0 {width} {BARS_HEIGHT}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        escape(&label)
    )
    .unwrap();
    for (i, d) in days.iter().enumerate() {
        let class = match d.worst {
            None => "n",
            Some(Health::Up) => "u",
            Some(Health::Degraded) => "g",
            Some(Health::Down) => "d",
        };
        write!(
            svg,
            r#"<rect x="{}" width="{BAR}" height="{BARS_HEIGHT}" class="{class}"><title>{}: {}</title></rect>"#,
            i as u32 * STEP,
            d.date,
            up_text(d)
        )
        .unwrap();
    }
    svg.push_str("</svg>");
    svg
}

fn up_text(d: &DayBar) -> String {
    match d.uptime {
        None => "no data".to_string(),
        Some(f) => format!("{} up", shown_percent(Some(f * 100.0))),
    }
}

fn worst_word(h: Option<Health>) -> &'static str {
    match h {
        Some(Health::Down) => "down at times",
        Some(Health::Degraded) => "degraded at times",
        _ => "",
    }
}

/// Average and peak latency per 5 minutes as two polylines (broken where
/// there is no sample), scaled from 0 to `top`.
pub fn chart(label: &str, series: &Series, top: f64) -> String {
    let n = series.avg_ms.len().max(1);
    let mut svg = String::with_capacity(8 * 1024);
    write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {n} {CHART_HEIGHT}" preserveAspectRatio="none" role="img" aria-label="{}">"#,
        escape(label)
    )
    .unwrap();
    write!(
        svg,
        r#"<line x1="0" y1="{y}" x2="{n}" y2="{y}" class="grid" vector-effect="non-scaling-stroke"/>"#,
        y = CHART_HEIGHT - 0.5
    )
    .unwrap();
    for (class, values) in [("max", &series.max_ms), ("avg", &series.avg_ms)] {
        let mut run: Vec<(f64, f64)> = Vec::new();
        let flush = |run: &mut Vec<(f64, f64)>, svg: &mut String| {
            if run.is_empty() {
                return;
            }
            if run.len() == 1 {
                // A lone point: a short dash, so it shows.
                let (x, y) = run[0];
                run.clear();
                run.extend([(x - 0.5, y), (x + 0.5, y)]);
            }
            svg.push_str(r#"<polyline class=""#);
            svg.push_str(class);
            svg.push_str(r#"" vector-effect="non-scaling-stroke" points=""#);
            for (i, (x, y)) in run.iter().enumerate() {
                if i > 0 {
                    svg.push(' ');
                }
                write!(svg, "{x},{y:.1}").unwrap();
            }
            svg.push_str(r#""/>"#);
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => {
                    let y = (CHART_HEIGHT - 1.0) - (v / top).clamp(0.0, 1.0) * (CHART_HEIGHT - 4.0);
                    run.push((i as f64 + 0.5, y));
                }
                None => flush(&mut run, &mut svg),
            }
        }
        flush(&mut run, &mut svg);
    }
    svg.push_str("</svg>");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `v`.
pub fn nice_ceiling(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * p).find(|c| *c >= v).unwrap_or(10.0 * p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_svg_is_escaped() {
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let days =
            vec![DayBar { date: "2026-11-20".into(), uptime: Some(1.0), worst: Some(Health::Up), no_data: false }];
        let svg = bars("<script>", &days, Some(100.0));
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("<title>2026-11-20: 100% up</title>"), "{svg}");
    }

    #[test]
    fn a_nice_ceiling_is_one_two_or_five() {
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn gaps_break_the_line() {
        let series = Series {
            start: String::new(),
            step_seconds: 300,
            avg_ms: vec![Some(1.0), Some(2.0), None, Some(3.0)],
            max_ms: vec![Some(1.0), Some(2.0), None, None],
        };
        let svg = chart("x", &series, 5.0);
        assert_eq!(svg.matches("<polyline").count(), 3, "{svg}");
    }
}
