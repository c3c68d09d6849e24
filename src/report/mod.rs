//! Reports: human tables for the terminal, JSON and CSV for machines, and
//! writing them to standard output or to a file (atomically: a file is
//! either complete or absent).

pub mod plot;
pub mod study;
pub mod task;
pub mod trace;

use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Format {
    /// The format a file name implies.
    pub fn from_path(p: &Path) -> Option<Format> {
        match p.extension()?.to_str()? {
            "json" => Some(Format::Json),
            "csv" => Some(Format::Csv),
            "txt" | "table" => Some(Format::Table),
            _ => None,
        }
    }
}

/// A simple aligned text table.
#[derive(Debug, Default)]
pub struct Table {
    pub title: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Table {
        Table {
            title: title.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut w = vec![0usize; cols];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(cols) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        if !self.title.is_empty() {
            out.push_str(&self.title);
            out.push('\n');
        }
        let line = |r: &Vec<String>| {
            let mut s = String::new();
            for (i, c) in r.iter().enumerate().take(cols) {
                let pad = w[i] - c.chars().count();
                // Numbers right-aligned, text left-aligned.
                if i > 0
                    && c.chars()
                        .next()
                        .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
                {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                if i + 1 < cols {
                    s.push_str("  ");
                }
            }
            s.trim_end().to_string() + "\n"
        };
        out.push_str(&line(&self.header));
        out.push_str(&line(&w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>()));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// A key/value table of a flat record.
pub fn key_values(title: &str, pairs: &[(&str, String)]) -> String {
    let mut t = Table::new(title, &["quantity", "value"]);
    for (k, v) in pairs {
        t.row(vec![k.to_string(), v.clone()]);
    }
    t.render()
}

/// JSON of a report, pretty-printed.
pub fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("reports serialise") + "\n"
}

/// CSV of records with flat fields (nested values are written as JSON).
pub fn to_csv<T: Serialize>(rows: &[T]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header_done = false;
    for r in rows {
        let v = serde_json::to_value(r).expect("reports serialise");
        let obj = v.as_object().expect("records are structs");
        if !header_done {
            w.write_record(obj.keys()).expect("in-memory write");
            header_done = true;
        }
        let cells: Vec<String> = obj
            .values()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        w.write_record(&cells).expect("in-memory write");
    }
    String::from_utf8(w.into_inner().expect("flush to memory")).expect("CSV is UTF-8")
}

/// Writes `text` to `path` atomically (a temporary file renamed into
/// place), or to standard output when `path` is `None`.
pub fn emit(text: &str, path: Option<&Path>) -> std::io::Result<()> {
    match path {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
        Some(p) => {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let tmp = match dir {
                Some(d) => d.join(format!(
                    ".{}.partial",
                    p.file_name().and_then(|s| s.to_str()).unwrap_or("out")
                )),
                None => std::path::PathBuf::from(format!(
                    ".{}.partial",
                    p.file_name().and_then(|s| s.to_str()).unwrap_or("out")
                )),
            };
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, p)
        }
    }
}
