//! Parameter sweeps: every combination of integration times, token group
//! sizes, ranks, LoRA placements and `--set` values, run in parallel
//! (rayon). Rows stream through a channel (crossbeam) to one writer that
//! appends them to `FILE.partial` as they finish, so an interrupted sweep
//! keeps every finished row; `resume` continues a partial file whose sweep
//! hash matches. The finished file is written sorted by combination index
//! and the partial removed, so the same command always gives the same bytes.

use crate::config::{self, Architecture, Targets, Workload};
use crate::report::{self, Format};
use crate::timing::summary::{self, LayerQuery};
use crate::timing::TimingOptions;
use crate::units::Ps;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// What each combination runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum SweepTarget {
    /// One linear layer (`aimcsim layer`).
    Layer {
        in_features: u32,
        out_features: u32,
        seq_len: u32,
    },
    /// A whole workload (`aimcsim run`).
    Workload(Workload),
}

/// Token group size: fixed, or the one that minimises the total latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tokens {
    Fixed(u32),
    Auto,
}

/// The axes of a sweep. An empty axis keeps the description's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepSpec {
    pub target: SweepTarget,
    pub arch: Architecture,
    pub integration_times: Vec<Ps>,
    pub tokens: Vec<Tokens>,
    pub ranks: Vec<u32>,
    pub targets: Vec<Targets>,
    /// `--set` axes: a field path (`arch.` or `workload.` prefix) and values.
    pub sets: Vec<(String, Vec<String>)>,
    pub tcdm_contention: bool,
}

/// One combination of the axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Combo {
    pub index: usize,
    pub integration_time: Option<Ps>,
    pub tokens: Option<Tokens>,
    pub rank: Option<u32>,
    pub targets: Option<Targets>,
    pub sets: Vec<(String, String)>,
}

/// Why a sweep cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Spec(String),
    #[error("{0}")]
    Io(String),
}

fn spec_err(m: impl Into<String>) -> SweepError {
    SweepError::Spec(m.into())
}

/// Splits `a,b,[c,d]` at top-level commas.
pub fn split_values(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => depth += 1,
            ')' | ']' | '}' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    out.push(cur.trim().to_string());
    out
}

impl SweepSpec {
    /// Every combination in a fixed order (the last axis varies fastest).
    pub fn combos(&self) -> Vec<Combo> {
        fn axis<T: Clone>(v: &[T]) -> Vec<Option<T>> {
            if v.is_empty() {
                vec![None]
            } else {
                v.iter().cloned().map(Some).collect()
            }
        }
        let mut set_axes: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for (path, values) in &self.sets {
            let mut next = Vec::new();
            for prefix in &set_axes {
                for v in values {
                    let mut p = prefix.clone();
                    p.push((path.clone(), v.clone()));
                    next.push(p);
                }
            }
            set_axes = next;
        }
        let mut out = Vec::new();
        for it in axis(&self.integration_times) {
            for t in axis(&self.tokens) {
                for r in axis(&self.ranks) {
                    for tg in axis(&self.targets) {
                        for s in &set_axes {
                            out.push(Combo {
                                index: out.len(),
                                integration_time: it,
                                tokens: t,
                                rank: r,
                                targets: tg.clone(),
                                sets: s.clone(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// A hash of everything that determines the rows.
    pub fn hash(&self) -> String {
        let canon =
            serde_json::to_string(&(env!("CARGO_PKG_VERSION"), self)).expect("specs serialise");
        let digest = Sha256::digest(canon.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The architecture and the query/workload of one combination.
    fn resolve(&self, c: &Combo) -> Result<(Architecture, Resolved), String> {
        let mut arch_sets = Vec::new();
        let mut work_sets = Vec::new();
        for (path, v) in &c.sets {
            if let Some(p) = path.strip_prefix("arch.") {
                arch_sets.push((p.to_string(), v.clone()));
            } else if let Some(p) = path.strip_prefix("workload.") {
                work_sets.push((p.to_string(), v.clone()));
            } else {
                return Err(format!(
                    "--set {path}: the path must start with `arch.` or `workload.`"
                ));
            }
        }
        let mut arch =
            config::override_architecture(&self.arch, &arch_sets).map_err(|e| e.to_string())?;
        if let Some(it) = c.integration_time {
            arch.aimc.integration_time = it;
        }
        arch.validate()
            .map_err(|e| format!("combination {}: {e}", c.index))?;
        match &self.target {
            SweepTarget::Layer {
                in_features,
                out_features,
                seq_len,
            } => {
                if !work_sets.is_empty() {
                    return Err("--set workload.*: a layer sweep has no workload".into());
                }
                if c.targets.is_some() {
                    return Err("--targets: a layer sweep has one projection; use --rank".into());
                }
                let q = LayerQuery {
                    in_features: *in_features,
                    out_features: *out_features,
                    rank: c.rank.unwrap_or(8),
                    tokens: match c.tokens {
                        Some(Tokens::Fixed(t)) => t,
                        _ => 8,
                    },
                    seq_len: *seq_len,
                };
                summary::layer_workload(&q, true)
                    .validate()
                    .map_err(|e| format!("combination {}: {e}", c.index))?;
                Ok((
                    arch,
                    Resolved::Layer(q, matches!(c.tokens, Some(Tokens::Auto))),
                ))
            }
            SweepTarget::Workload(w) => {
                let mut w = config::override_workload(w, &work_sets).map_err(|e| e.to_string())?;
                if let Some(Tokens::Fixed(t)) = c.tokens {
                    w.tokens_per_group = t;
                }
                if let Some(r) = c.rank {
                    w.lora.rank = r;
                }
                if let Some(t) = &c.targets {
                    w.lora.targets = t.clone();
                }
                w.validate()
                    .map_err(|e| format!("combination {}: workload: {e}", c.index))?;
                Ok((
                    arch,
                    Resolved::Workload(w, matches!(c.tokens, Some(Tokens::Auto))),
                ))
            }
        }
    }

    /// Checks every combination before any work starts.
    pub fn check(&self) -> Result<Vec<Combo>, SweepError> {
        for (path, values) in &self.sets {
            if values.iter().any(|v| v.is_empty()) {
                return Err(spec_err(format!(
                    "--set {path}: an empty value in the list"
                )));
            }
        }
        let combos = self.combos();
        for c in &combos {
            self.resolve(c).map_err(SweepError::Spec)?;
        }
        Ok(combos)
    }
}

enum Resolved {
    Layer(LayerQuery, bool),
    Workload(Workload, bool),
}

/// Host-time fields vary from run to run: sweeps leave them out so that the
/// same command gives the same bytes.
const HOST_FIELDS: [&str; 2] = ["host_seconds", "events_per_host_second"];

/// Flattens nested objects into `outer_inner` keys; lists are left out.
fn flatten(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}_{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(_) => {}
        other => {
            if !HOST_FIELDS.contains(&prefix) {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
}

fn targets_name(t: &Targets) -> String {
    match t {
        Targets::None => "none".into(),
        Targets::All => "all".into(),
        Targets::Qkv => "qkv".into(),
        Targets::Ffn => "ffn".into(),
        Targets::Only(v) => v.join("+"),
    }
}

/// Runs one combination into a flat row.
pub fn run_combo(spec: &SweepSpec, hash: &str, c: &Combo) -> Result<Map<String, Value>, String> {
    let opts = TimingOptions {
        tcdm_contention: spec.tcdm_contention,
    };
    let (arch, resolved) = spec.resolve(c)?;
    let mut row = Map::new();
    row.insert("sweep".into(), hash.into());
    row.insert("index".into(), c.index.into());
    row.insert(
        "integration_time_ns".into(),
        arch.aimc.integration_time.as_ns_f64().into(),
    );
    let tokens_asked = match c.tokens {
        Some(Tokens::Auto) => "auto".to_string(),
        Some(Tokens::Fixed(t)) => t.to_string(),
        None => "default".to_string(),
    };
    row.insert("tokens_asked".into(), tokens_asked.into());
    for (p, v) in &c.sets {
        row.insert(format!("set:{p}"), v.clone().into());
    }
    let result = match resolved {
        Resolved::Layer(q, auto) => {
            let r = if auto {
                summary::layer_auto(&arch, &q, opts).map_err(|e| e.to_string())?
            } else {
                summary::layer(&arch, &q, opts).map_err(|e| e.to_string())?
            };
            serde_json::to_value(r).expect("reports serialise")
        }
        Resolved::Workload(w, auto) => {
            row.insert("targets".into(), targets_name(&w.lora.targets).into());
            let r = if auto {
                summary::run_workload_auto(&arch, &w, opts).map_err(|e| e.to_string())?
            } else {
                summary::run_workload(&arch, &w, opts).map_err(|e| e.to_string())?
            };
            serde_json::to_value(r).expect("reports serialise")
        }
    };
    flatten("", &result, &mut row);
    Ok(row)
}

/// Where finished rows go.
pub struct Output {
    /// The final file (`None`: standard output).
    pub path: Option<PathBuf>,
    pub format: Format,
    pub resume: bool,
    pub progress: bool,
}

fn partial_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Rows already in a partial file of the same sweep.
fn load_partial(
    path: &Path,
    hash: &str,
) -> Result<BTreeMap<usize, Map<String, Value>>, SweepError> {
    let file = std::fs::File::open(path)
        .map_err(|e| SweepError::Io(format!("{}: {e}", path.display())))?;
    let mut rows = BTreeMap::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| SweepError::Io(format!("{}: {e}", path.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            // A row cut short by the interruption: run it again.
            Err(_) => continue,
        };
        if i == 0 {
            if v["aimcsim_sweep"] != hash {
                return Err(spec_err(format!(
                    "--resume: {} belongs to another sweep ({} here, {} there); remove it or run without --resume",
                    path.display(),
                    hash,
                    v["aimcsim_sweep"]
                )));
            }
            continue;
        }
        if let (Some(idx), Value::Object(m)) = (v["index"].as_u64(), v) {
            rows.insert(idx as usize, m);
        }
    }
    Ok(rows)
}

/// Renders rows sorted by index.
pub fn render(rows: &BTreeMap<usize, Map<String, Value>>, format: Format) -> String {
    let list: Vec<&Map<String, Value>> = rows.values().collect();
    match format {
        Format::Json => report::to_json(&list),
        Format::Csv => report::to_csv(&list),
        Format::Table => {
            let cols = [
                "index",
                "integration_time_ns",
                "tokens",
                "rank",
                "targets",
                "aimc_ns",
                "pmca_ns",
                "pmca_to_aimc",
                "total_ns",
                "baseline_ns",
                "overhead",
                "fits_tcdm",
            ];
            let mut present: Vec<&str> = cols
                .iter()
                .copied()
                .filter(|c| list.iter().any(|r| r.contains_key(*c)))
                .collect();
            if let Some(first) = list.first() {
                let sets = first.keys().filter(|k| k.starts_with("set:"));
                present.splice(1..1, sets.map(String::as_str));
            }
            let mut t = report::Table::new("", &present);
            for r in &list {
                t.row(
                    present
                        .iter()
                        .map(|c| match r.get(*c) {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Number(n)) => match n.as_f64() {
                                Some(x) if n.is_f64() => format!("{x:.3}"),
                                _ => n.to_string(),
                            },
                            Some(other) => other.to_string(),
                            None => String::new(),
                        })
                        .collect(),
                );
            }
            t.render()
        }
    }
}

/// Runs a checked sweep; returns the rendered rows when writing to stdout.
pub fn run(spec: &SweepSpec, combos: &[Combo], out: &Output) -> Result<Option<String>, SweepError> {
    let hash = spec.hash();
    let partial = out.path.as_deref().map(partial_path);
    let mut done = BTreeMap::new();
    if let Some(p) = &partial {
        if out.resume && p.exists() {
            done = load_partial(p, &hash)?;
        }
    }
    let todo: Vec<&Combo> = combos
        .iter()
        .filter(|c| !done.contains_key(&c.index))
        .collect();
    let (tx, rx) = crossbeam_channel::unbounded::<Result<Map<String, Value>, String>>();
    let writer_partial = partial.clone();
    let header = serde_json::json!({ "aimcsim_sweep": hash, "combinations": combos.len() });
    let progress = out.progress;
    let total = todo.len() as u64;
    let writer = std::thread::spawn(move || -> Result<Vec<Map<String, Value>>, SweepError> {
        let mut file = match &writer_partial {
            Some(p) => {
                // Rewrite the partial with the rows kept so far, then append.
                let f = std::fs::File::create(p)
                    .map_err(|e| SweepError::Io(format!("{}: {e}", p.display())))?;
                Some(std::io::BufWriter::new(f))
            }
            None => None,
        };
        let io = |e: std::io::Error| SweepError::Io(e.to_string());
        if let Some(f) = file.as_mut() {
            writeln!(f, "{header}").map_err(io)?;
        }
        let bar = if progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut rows = Vec::new();
        let mut first_error = None;
        for msg in rx {
            match msg {
                Ok(row) => {
                    if let Some(f) = file.as_mut() {
                        writeln!(f, "{}", Value::Object(row.clone())).map_err(io)?;
                        f.flush().map_err(io)?;
                    }
                    rows.push(row);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        if let Some(e) = first_error {
            return Err(SweepError::Spec(e));
        }
        Ok(rows)
    });
    // Rows already done go first into the new partial.
    for row in done.values() {
        tx.send(Ok(row.clone()))
            .expect("the writer outlives the senders");
    }
    todo.par_iter().for_each_with(tx, |tx, c| {
        let _ = tx.send(run_combo(spec, &hash, c));
    });
    let rows = writer
        .join()
        .map_err(|_| SweepError::Io("the sweep writer thread panicked".into()))??;
    let mut sorted = BTreeMap::new();
    for r in rows {
        let idx = r["index"].as_u64().expect("rows carry their index") as usize;
        sorted.insert(idx, r);
    }
    let text = render(&sorted, out.format);
    match (&out.path, &partial) {
        (Some(path), Some(p)) => {
            report::emit(&text, Some(path))
                .map_err(|e| SweepError::Io(format!("{}: {e}", path.display())))?;
            std::fs::remove_file(p).map_err(|e| SweepError::Io(format!("{}: {e}", p.display())))?;
            Ok(None)
        }
        _ => Ok(Some(text)),
    }
}
