//! A statement as an aligned table for people, and as CSV for spreadsheets.

use rust_decimal::Decimal;

use crate::Statement;

/// The header row of [`Statement::render_csv`] (and of [`Statement::csv_rows`]
/// when several statements go into one file).
pub const CSV_HEADER: &str =
    "tenant,period,currency,kind,function,dimension,quantity,quantity_exact,unit,unit_price,amount";

impl Statement {
    /// An aligned, human-readable table: one row per line item, the free
    /// tier's credits (negative), subtotal, free tier and total with the
    /// currency. Quantities rounded for display (GB-months) are marked `≈`.
    pub fn render_table(&self) -> String {
        let mut rows: Vec<[String; 6]> = vec![[
            "function".into(),
            "dimension".into(),
            "quantity".into(),
            "unit".into(),
            "unit price".into(),
            "amount".into(),
        ]];
        for l in &self.lines {
            let approx = if l.quantity_exact { "" } else { "≈" };
            rows.push([
                l.function.clone().unwrap_or_else(|| "-".into()),
                l.dimension.to_string(),
                format!("{approx}{}", l.quantity),
                l.unit.clone(),
                l.unit_price.to_string(),
                l.amount.to_string(),
            ]);
        }
        for c in &self.free_tier {
            rows.push([
                "free tier".into(),
                c.dimension.to_string(),
                format!("{} of {}", c.applied, c.allowance),
                c.unit.clone(),
                c.unit_price.to_string(),
                negative(c.amount),
            ]);
        }
        let mut widths = [0usize; 6];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let pad = |s: &str, width: usize, right: bool| {
            let fill = " ".repeat(width.saturating_sub(s.chars().count()));
            if right {
                format!("{fill}{s}")
            } else {
                format!("{s}{fill}")
            }
        };
        let mut out = format!(
            "Statement for tenant {} · {} · {}\n\n",
            self.tenant, self.period, self.currency
        );
        if self.lines.is_empty() {
            out.push_str("(no billable usage in this period)\n");
        } else {
            for row in &rows {
                let cells: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .enumerate()
                    // quantity, unit price and amount are numbers: right-aligned.
                    .map(|(i, (cell, w))| pad(cell, w, matches!(i, 2 | 4 | 5)))
                    .collect();
                out.push_str(cells.join("  ").trim_end());
                out.push('\n');
            }
        }
        let width: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let totals = [
            ("subtotal", self.subtotal.to_string()),
            ("free tier", negative(self.free_tier_total)),
            ("total", format!("{} {}", self.currency, self.total)),
        ];
        out.push('\n');
        for (label, value) in totals {
            let gap = width
                .saturating_sub(label.len() + value.chars().count())
                .max(2);
            out.push_str(&format!("{label}{}{value}\n", " ".repeat(gap)));
        }
        out
    }

    /// CSV with [`CSV_HEADER`]: one `line` row per line item, one
    /// `free_tier` row per credit (its amount negative, so the `amount`
    /// column of these rows sums to the total), and a `total` row.
    pub fn render_csv(&self) -> String {
        format!("{CSV_HEADER}\n{}", self.csv_rows())
    }

    /// [`Self::render_csv`] without the header.
    pub fn csv_rows(&self) -> String {
        let mut out = String::new();
        let mut row = |kind: &str, cells: [&str; 7]| {
            let mut fields = vec![
                self.tenant.clone(),
                self.period.to_string(),
                self.currency.clone(),
                kind.to_string(),
            ];
            fields.extend(cells.iter().map(|c| c.to_string()));
            let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&quoted.join(","));
            out.push('\n');
        };
        for l in &self.lines {
            row(
                "line",
                [
                    l.function.as_deref().unwrap_or("-"),
                    l.dimension.id(),
                    &l.quantity,
                    if l.quantity_exact { "true" } else { "false" },
                    &l.unit,
                    &l.unit_price.to_string(),
                    &l.amount.to_string(),
                ],
            );
        }
        for c in &self.free_tier {
            row(
                "free_tier",
                [
                    "-",
                    c.dimension.id(),
                    &c.applied,
                    "true",
                    &c.unit,
                    &c.unit_price.to_string(),
                    &negative(c.amount),
                ],
            );
        }
        row("total", ["-", "", "", "", "", "", &self.total.to_string()]);
        out
    }
}

/// A credit shown as a deduction: `-1.20`, and `0.00` for nothing.
fn negative(amount: Decimal) -> String {
    if amount.is_zero() {
        amount.to_string()
    } else {
        format!("-{amount}")
    }
}

/// RFC 4180: quote a field holding a comma, a quote or a line break.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}
