//! Printing answers: plain aligned columns for people, the API's JSON for
//! scripts.

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use super::Output;
use crate::model::wire::format_ms;

/// Prints `value` as JSON, or as the table `rows` builds.
pub fn print<T: Serialize>(out: Output, value: &T, header: &[&str], rows: impl FnOnce(&T) -> Vec<Vec<String>>) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => {
            let mut table = Table::new();
            table
                .load_style(presets::NOTHING)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(header.to_vec());
            for row in rows(value) {
                table.add_row(row);
            }
            // Each line without the trailing padding comfy-table adds.
            for line in table.to_string().lines() {
                println!("{}", line.trim_end());
            }
        }
    }
}

/// `name: value` lines for one object, or its JSON.
pub fn details<T: Serialize>(out: Output, value: &T, fields: Vec<(&str, String)>) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => {
            let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
            for (key, value) in fields {
                println!("{key:>width$}  {value}");
            }
        }
    }
}

/// How long ago `ms` was, roughly: `12s ago`, `3m ago`.
pub fn ago(ms: i64) -> String {
    let secs = (crate::model::now_ms() - ms).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86_399 => format!("{}h ago", secs / 3600),
        _ => format_ms(ms),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
