//! Architecture and workload descriptions: loading RON files, validating
//! them, applying `--set` overrides, and the errors that name the file, the
//! field and what is wrong.

pub mod architecture;
pub mod workload;

pub use architecture::{Architecture, LinkFormat, Schedule};
pub use workload::{BlockKind, LoraSpec, ModelKind, Op, Targets, TaskSpec, WeightsSpec, Workload};

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The bundled MobileBERT description, the default workload.
pub const DEFAULT_WORKLOAD_RON: &str = include_str!("../../workloads/mobilebert.ron");

/// Everything that can be wrong with a description.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the file: {reason}")]
    Io { file: String, reason: String },
    #[error("{file}:{line}:{col}: {msg}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("--set {expr}: {msg}")]
    Override { expr: String, msg: String },
}

fn parse_ron<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    ron::Options::default()
        .from_str::<T>(text)
        .map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            line: e.span.start.line,
            col: e.span.start.col,
            msg: e.code.to_string(),
        })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Finds the line of the first occurrence of `needle` (e.g. a quoted
/// operation name) so validation errors can point into the file.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn invalid(file: &str, text: Option<&str>, msg: String) -> ConfigError {
    // Point at the line of the operation the message names, if any.
    let line = text.and_then(|t| {
        let start = msg.find('`')?;
        let rest = &msg[start + 1..];
        let end = rest.find('`')?;
        line_of(t, &format!("\"{}\"", &rest[..end]))
    });
    let file = match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    };
    ConfigError::Invalid { file, msg }
}

/// Loads and validates an architecture description.
pub fn load_architecture(path: &Path) -> Result<Architecture, ConfigError> {
    let text = read(path)?;
    let file = path.display().to_string();
    let arch: Architecture = parse_ron(&file, &text)?;
    arch.validate()
        .map_err(|m| invalid(&file, Some(&text), m))?;
    Ok(arch)
}

/// Loads and validates a workload description. A relative
/// `weights.file` is resolved against the description's directory here
/// (the path is rewritten, so it survives serialisation and `--set`).
pub fn load_workload(path: &Path) -> Result<Workload, ConfigError> {
    let text = read(path)?;
    let file = path.display().to_string();
    let mut w = parse_workload(&file, &text)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() && !p.starts_with(ASSETS) {
            *p = dir.join(&*p);
        }
    };
    if let Some(ws) = &mut w.weights {
        resolve(&mut ws.file);
    }
    if let Some(t) = &mut w.task {
        resolve(&mut t.tokenizer);
        resolve(&mut t.data);
    }
    Ok(w)
}

/// The leading path component that stands for the asset cache.
pub const ASSETS: &str = "$ASSETS";

/// The asset cache of `scripts/fetch-assets.sh`:
/// `$AIMCSIM_ASSETS`, else `$HOME/.cache/aimcsim/assets`.
pub fn assets_dir() -> PathBuf {
    match std::env::var_os("AIMCSIM_ASSETS") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/aimcsim/assets")
        }
    }
}

/// `p` with a leading `$ASSETS` component replaced by [`assets_dir`].
pub fn expand_assets(p: &Path) -> PathBuf {
    match p.strip_prefix(ASSETS) {
        Ok(rest) => assets_dir().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// Parses and validates workload text (`file` names it in errors).
pub fn parse_workload(file: &str, text: &str) -> Result<Workload, ConfigError> {
    let w: Workload = parse_ron(file, text)?;
    w.validate().map_err(|m| invalid(file, Some(text), m))?;
    Ok(w)
}

/// Renders a description as pretty RON.
pub fn to_ron<T: Serialize>(value: &T) -> String {
    let cfg = ron::ser::PrettyConfig::new()
        .depth_limit(8)
        .struct_names(true)
        .separate_tuple_members(false);
    ron::ser::to_string_pretty(value, cfg).expect("descriptions always serialise")
}

/// Interprets the value of a `--set path=value` override, written as in RON,
/// as the JSON value serde would see: unit-carrying values (`128ns`) and enum
/// variants (`Fp16`) become strings, `None` null, `Some(x)` x.
fn override_value(v: &str) -> Result<serde_json::Value, String> {
    let v = v.trim();
    if v == "None" {
        return Ok(serde_json::Value::Null);
    }
    if let Some(inner) = v.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')) {
        return override_value(inner);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Ok(n.into());
    }
    if let Ok(x) = v.parse::<f64>() {
        return Ok(x.into());
    }
    if v == "true" || v == "false" {
        return Ok((v == "true").into());
    }
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(s.into());
    }
    // Anything without RON structure (`128ns`, `-5ns`, `Fp16`) is a string:
    // the field's own parser says what is wrong with it.
    let structured = v.contains(['(', ')', '[', ']', '{', '}', ',', '"', ':']);
    if !structured && !v.is_empty() {
        return Ok(v.into());
    }
    if let Some(name) = v.strip_suffix(')') {
        // A newtype enum variant such as Only(["query","key"]).
        if let Some((variant, inner)) = name.split_once('(') {
            let inner: serde_json::Value = ron::from_str(inner).map_err(|e| e.to_string())?;
            return Ok(serde_json::json!({ variant: inner }));
        }
    }
    ron::from_str::<serde_json::Value>(v).map_err(|e| format!("cannot read the value: {e}"))
}

/// Applies `field.path=value` overrides to a description.
pub fn apply_overrides<T: Serialize + DeserializeOwned>(
    value: &T,
    prefix: &str,
    overrides: &[(String, String)],
) -> Result<T, ConfigError> {
    let mut json = serde_json::to_value(value).expect("descriptions always serialise");
    for (path, raw) in overrides {
        let expr = format!("{prefix}{path}={raw}");
        let err = |msg: String| ConfigError::Override {
            expr: expr.clone(),
            msg,
        };
        let new = override_value(raw).map_err(err)?;
        let mut node = &mut json;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let here = parts[..i].join(".");
            node = match node {
                serde_json::Value::Object(map) => {
                    if !map.contains_key(*part) {
                        let mut keys: Vec<&String> = map.keys().collect();
                        keys.sort();
                        let keys: Vec<&str> = keys.iter().map(|s| s.as_str()).collect();
                        return Err(err(format!(
                            "no field `{part}`{} (fields: {})",
                            if here.is_empty() {
                                String::new()
                            } else {
                                format!(" in `{here}`")
                            },
                            keys.join(", ")
                        )));
                    }
                    map.get_mut(*part).expect("checked")
                }
                serde_json::Value::Array(items) => {
                    let idx: usize = part
                        .parse()
                        .map_err(|_| err(format!("`{here}` is a list: index it with a number")))?;
                    let len = items.len();
                    items.get_mut(idx).ok_or_else(|| {
                        err(format!(
                            "`{here}` has {len} entries; index {idx} is out of range"
                        ))
                    })?
                }
                _ => return Err(err(format!("`{here}` has no sub-fields"))),
            };
        }
        *node = new;
    }
    serde_json::from_value(json).map_err(|e| ConfigError::Override {
        expr: join_sets(prefix, overrides),
        msg: e.to_string(),
    })
}

/// `(field.path, value)` pairs of `--set`.
pub type Overrides = Vec<(String, String)>;

/// Splits `arch.a.b=v` / `workload.a.b=v` overrides by description.
pub fn split_overrides(sets: &[String]) -> Result<(Overrides, Overrides), ConfigError> {
    let mut arch = Vec::new();
    let mut work = Vec::new();
    for s in sets {
        let (path, value) = s.split_once('=').ok_or_else(|| ConfigError::Override {
            expr: s.clone(),
            msg: "expected arch.path.to.field=value or workload.path.to.field=value".into(),
        })?;
        if let Some(p) = path.strip_prefix("arch.") {
            arch.push((p.to_string(), value.to_string()));
        } else if let Some(p) = path.strip_prefix("workload.") {
            work.push((p.to_string(), value.to_string()));
        } else {
            return Err(ConfigError::Override {
                expr: s.clone(),
                msg: "the path must start with `arch.` or `workload.`".into(),
            });
        }
    }
    Ok((arch, work))
}

/// Applies overrides and validates the result.
pub fn override_architecture(
    arch: &Architecture,
    sets: &[(String, String)],
) -> Result<Architecture, ConfigError> {
    if sets.is_empty() {
        return Ok(arch.clone());
    }
    let a: Architecture = apply_overrides(arch, "arch.", sets)?;
    a.validate().map_err(|m| ConfigError::Override {
        expr: join_sets("arch.", sets),
        msg: m,
    })?;
    Ok(a)
}

/// Applies overrides and validates the result.
pub fn override_workload(w: &Workload, sets: &[(String, String)]) -> Result<Workload, ConfigError> {
    if sets.is_empty() {
        return Ok(w.clone());
    }
    let out: Workload = apply_overrides(w, "workload.", sets)?;
    out.validate().map_err(|m| ConfigError::Override {
        expr: join_sets("workload.", sets),
        msg: m,
    })?;
    Ok(out)
}

fn join_sets(prefix: &str, sets: &[(String, String)]) -> String {
    sets.iter()
        .map(|(p, v)| format!("{prefix}{p}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}
