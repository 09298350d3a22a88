//! How commands print data: `-o table` (for people; comfy-table) or `-o json` (for scripts).

use serde_json::Value;

/// The output format of a command that prints data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON on stdout: one document, or one object per line (JSON Lines) for the commands
    /// that print records as they come (`consume`, `produce`).
    Json,
}

/// The `-o/--output` option.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// A table: a header row and rows of cells (already text).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    text(&build(header, rows))
}

/// As [`table`], for tables printed one after another as rows come (`krpc consume`): each
/// column is at least as wide as `widths` says (content widths, in terminal columns; one per
/// column, grown here to this table's), so the columns of successive tables line up unless a
/// cell widens one; from then on the wider column is kept.
pub fn table_growing(header: &[&str], rows: &[Vec<String>], widths: &mut Vec<u16>) -> String {
    let mut t = build(header, rows);
    let content = t.column_max_content_widths();
    widths.resize(content.len(), 0);
    for ((column, width), now) in t.column_iter_mut().zip(widths.iter_mut()).zip(content) {
        *width = (*width).max(now);
        // The boundary counts the padding (two spaces on the right).
        column.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(
            comfy_table::Width::Fixed(width.saturating_add(2)),
        ));
    }
    text(&t)
}

fn build(header: &[&str], rows: &[Vec<String>]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        t.add_row(row.clone());
    }
    // Columns start at the left edge and are two spaces apart, as kubectl and kafkactl print.
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    t
}

fn text(t: &comfy_table::Table) -> String {
    t.to_string()
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tables printed one after another keep their columns where the widest so far put them.
    #[test]
    fn growing_tables_line_up_with_the_earlier_ones() {
        let mut widths = Vec::new();
        let row = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        let first = table_growing(&["k", "v"], &[row("a-long-key", "1")], &mut widths);
        assert_eq!(first, "K           V\na-long-key  1");
        let second = table_growing(&["k", "v"], &[row("b", "2")], &mut widths);
        assert_eq!(
            second, "K           V\nb           2",
            "as wide as the first"
        );
        let third = table_growing(&["k", "v"], &[row("a-longer-key", "3")], &mut widths);
        assert_eq!(third, "K             V\na-longer-key  3", "grown");
        assert_eq!(widths, [12, 1]);
    }
}
