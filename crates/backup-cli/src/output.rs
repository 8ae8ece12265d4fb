//! `-o table|json|yaml`: one way to print results, for people (table) and scripts (json, yaml).

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

/// Something printable as rows under a header, as well as serialisable.
pub trait Tabular: Serialize {
    fn header() -> Vec<&'static str>;
    fn row(&self) -> Vec<String>;
}

/// Prints `items` in `format` to stdout.
pub fn print<T: Tabular>(items: &[T], format: OutputFormat) -> Result<()> {
    let mut out = std::io::stdout().lock();
    write(&mut out, items, format)
}

fn write<T: Tabular>(out: &mut impl Write, items: &[T], format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(items)?)?,
        OutputFormat::Yaml => write!(out, "{}", serde_yaml_ng::to_string(items)?)?,
        OutputFormat::Table => {
            let header: Vec<String> = T::header().into_iter().map(String::from).collect();
            let rows: Vec<Vec<String>> = items.iter().map(Tabular::row).collect();
            let widths: Vec<usize> = (0..header.len())
                .map(|col| {
                    std::iter::once(&header)
                        .chain(&rows)
                        .map(|row| row.get(col).map_or(0, |cell| cell.chars().count()))
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in std::iter::once(&header).chain(&rows) {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, width)| format!("{cell:<width$}"))
                    .collect();
                writeln!(out, "{}", cells.join("   ").trim_end())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Item {
        name: String,
        size: u64,
    }

    impl Tabular for Item {
        fn header() -> Vec<&'static str> {
            vec!["NAME", "SIZE"]
        }
        fn row(&self) -> Vec<String> {
            vec![self.name.clone(), self.size.to_string()]
        }
    }

    fn render(format: OutputFormat) -> String {
        let items = [
            Item {
                name: "nightly-20260101000000".into(),
                size: 5,
            },
            Item {
                name: "a".into(),
                size: 123456,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, &items, format).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_aligns_columns_under_the_header() {
        let table = render(OutputFormat::Table);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "NAME                     SIZE");
        assert_eq!(lines[1], "nightly-20260101000000   5");
        assert_eq!(lines[2], "a                        123456");
    }

    #[test]
    fn json_and_yaml_carry_the_same_fields() {
        let json: serde_json::Value = serde_json::from_str(&render(OutputFormat::Json)).unwrap();
        assert_eq!(json[1]["size"], 123456);
        let yaml: serde_json::Value = serde_yaml_ng::from_str(&render(OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
    }
}
