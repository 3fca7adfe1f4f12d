//! How the CLI prints records: aligned tables for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;

/// Prints `rows` as a table with `headers`, or each record as a JSON line.
///
/// Writes stop quietly when stdout closes (`sighost deliveries | head`)
/// instead of panicking as `println!` would.
pub fn print<T: Serialize>(
    json: bool,
    records: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    let _ = write(&mut std::io::stdout().lock(), json, records, headers, row);
}

fn write<T: Serialize>(
    out: &mut impl Write,
    json: bool,
    records: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> std::io::Result<()> {
    if json {
        for record in records {
            writeln!(out, "{}", serde_json::to_string(record).unwrap_or_default())?;
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records.iter().map(row).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect())?;
    for row in rows {
        line(row)?;
    }
    if records.is_empty() {
        line(vec!["(none)".into()])?;
    }
    Ok(())
}

/// A timestamp for a table cell: seconds precision, UTC.
pub fn time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Text for a table cell, cut to `max` characters.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// A tenant's limits in a few words: `running≤5 pending≤1000 emit≤100/s`,
/// or `-` without any.
pub fn limits(limits: &sighost::store::TenantLimits) -> String {
    let parts: Vec<String> = [
        limits.max_running.map(|n| format!("running≤{n}")),
        limits.max_pending.map(|n| format!("pending≤{n}")),
        limits.max_emit_per_s.map(|n| format!("emit≤{n}/s")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}
