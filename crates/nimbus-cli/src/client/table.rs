//! Text output: aligned tables, sizes and times as people read them.

use std::io::Write;

/// Prints `rows` under `headers`, columns aligned (the last one unpadded);
/// `(none)` when there are no rows.
pub(crate) fn print(headers: &[&str], rows: &[Vec<String>]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(render(headers, rows).as_bytes());
    let _ = out.flush();
}

pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(&mut headers.iter().copied());
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    if rows.is_empty() {
        text.push_str("(none)\n");
    }
    text
}

/// `18.4 MB`, `412 kB`, `900 B` (decimal units, as `nimbus build` prints).
pub(crate) fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.0} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// An RFC 3339 time to the second, as `2026-12-01 21:37:54Z` (the server's
/// own text if it is not one).
pub(crate) fn time(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.to_string();
    };
    let (clock, after) = rest.split_at(rest.floor_char_boundary(8.min(rest.len())));
    // The fraction of a second goes; the zone (`Z`, `+01:00`) stays.
    let zone = after.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    format!("{date} {clock}{zone}")
}

/// A JSON value as a cell: strings unquoted, null as `-`.
pub(crate) fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec![
                "acme".to_string(),
                "hello".to_string(),
                "live:2".to_string(),
            ],
            vec!["b".to_string(), "a-long-name".to_string(), String::new()],
        ];
        assert_eq!(
            render(&["TENANT", "FUNCTION", "ALIASES"], &rows),
            "TENANT  FUNCTION     ALIASES\n\
             acme    hello        live:2\n\
             b       a-long-name\n"
        );
        assert_eq!(render(&["A", "B"], &[]), "A  B\n(none)\n");
    }

    #[test]
    fn sizes_and_times_read_as_people_write_them() {
        assert_eq!(size(18_403_461), "18.4 MB");
        assert_eq!(size(412_300), "412 kB");
        assert_eq!(size(900), "900 B");
        assert_eq!(time("2026-12-01T21:37:54.123456Z"), "2026-12-01 21:37:54Z");
        assert_eq!(
            time("2026-12-01T21:37:54+00:00"),
            "2026-12-01 21:37:54+00:00"
        );
        assert_eq!(time("yesterday"), "yesterday");
        assert_eq!(cell(&serde_json::json!("x")), "x");
        assert_eq!(cell(&serde_json::json!(3)), "3");
        assert_eq!(cell(&serde_json::Value::Null), "-");
    }
}
