//! How commands print data: `-o table` (for people; comfy-table) or `-o json` (for scripts).

use serde_json::Value;

/// The output format of a command that prints data.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns.
    #[default]
    Table,
    /// One JSON document on stdout.
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
