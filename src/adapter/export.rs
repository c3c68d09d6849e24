//! Writing LoRA adapters ([`LoraWeights`]) as Hugging Face PEFT directories
//! that PEFT loads onto the real model and [`load`](super::load) +
//! [`match_workload`](super::match_workload) +
//! [`LoraWeights::from_peft`] read back bit for bit.
//!
//! Files:
//! - `adapter_config.json`: a PEFT `LoraConfig` (keys sorted, as PEFT
//!   writes them). `r` is the most common rank, `lora_alpha` the most
//!   common alpha among the modules of that rank; modules that differ get
//!   `rank_pattern` / `alpha_pattern` entries. `target_modules` lists every
//!   module's full path: PEFT adapts exactly those (a path matches itself,
//!   or the end of a longer name when the model is wrapped).
//! - `adapter_model.safetensors`: F32 `base_model.model.<path>.lora_A.weight`
//!   (`r x in`) and `.lora_B.weight` (`out x r`), the transposes of
//!   [`LoraModule`]'s `in x r` A and `r x out` B.
//! - `aimcsim.json`: the generator, workload, source and the caller's
//!   provenance (how the adapter was computed).
//!
//! Scaling: a module's alpha is `scaling * r` in f64, exact for any f32
//! scaling and rank below 2^29, so PEFT's and aimcsim's `alpha / r` give
//! back the f32 scaling exactly (checked per module).
//!
//! Pattern keys. PEFT picks a module's `rank_pattern` / `alpha_pattern`
//! entry by matching each key, as a regular expression, against the end of
//! the module's name: `(.*\.)?key$` (older releases `.*\.key$`, which needs
//! a dot before the key, and one key for both patterns), taking the first
//! that matches. So a key is the module's path without its first component
//! (`layer.3.attention.self.query` for `encoder.layer.3...`), or, when that
//! is ambiguous or would start with an index, the whole path (which only
//! the newer form matches at the top level); every key matches exactly one
//! exported module, and a module has the same key in both patterns:
//! PEFT's first match and aimcsim's longest match then agree.
//!
//! Writing is atomic: the files go to a hidden sibling directory, are read
//! back and compared with the input, and only then is it renamed to the
//! destination. A failure leaves no destination directory (or the old one,
//! untouched).

use super::{err, layer_index, load, match_workload, Adapter, AdapterError, AdapterModule};
use super::{PeftConfig, TargetModules};
use crate::config::{BlockKind, Op, Workload};
use crate::functional::weights::{LoraKey, LoraModule, LoraWeights};
use crate::functional::weights_st::SafetensorsWeights;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// PEFT's `TaskType` names.
pub const TASK_TYPES: [&str; 6] = [
    "SEQ_CLS",
    "SEQ_2_SEQ_LM",
    "CAUSAL_LM",
    "TOKEN_CLS",
    "QUESTION_ANS",
    "FEATURE_EXTRACTION",
];

/// What the files record besides the matrices, and whether an existing
/// adapter directory may be replaced.
#[derive(Debug, Clone, Default)]
pub struct ExportMeta {
    /// `base_model_name_or_path`: the Hub id or local path of the model the
    /// adapter is for; `null` when `None`.
    pub base_model: Option<String>,
    /// PEFT `task_type`: `None` (`null`: a plain `PeftModel`) or one of
    /// [`TASK_TYPES`], e.g. `FEATURE_EXTRACTION`.
    pub task_type: Option<String>,
    /// How the adapter was computed (method, data, seed, ...): written to
    /// `aimcsim.json` as `provenance`.
    pub provenance: serde_json::Map<String, Value>,
    /// Replace an existing non-empty destination. Only a directory holding
    /// `adapter_config.json` is replaced (whole); anything else is refused.
    pub overwrite: bool,
}

/// Gives a projection instance's module path in the base model
/// (`encoder.layer.3.attention.self.query`), `None` when it has none.
pub type ModulePath<'a> = dyn Fn(BlockKind, Option<u32>, &str) -> Option<String> + 'a;

/// The default module path: the graph node's name (`layer.3.query`,
/// `head.classifier`), which [`match_workload`] maps back to the same
/// projection. For workloads without a checkpoint: PEFT needs the real
/// model's names (see [`checkpoint_path`]).
pub fn node_path(block: BlockKind, layer: Option<u32>, op: &str) -> Option<String> {
    match (block, layer) {
        (BlockKind::Layer, Some(i)) => Some(format!("layer.{i}.{op}")),
        (BlockKind::Embedding | BlockKind::Head, None) => Some(format!("{}.{op}", block.field())),
        _ => None,
    }
}

/// Module paths from the checkpoint the workload's weights come from: the
/// tensor each projection reads, without `.weight`
/// (`encoder.layer.3.attention.self.query`).
pub fn checkpoint_path(
    st: &SafetensorsWeights,
) -> impl Fn(BlockKind, Option<u32>, &str) -> Option<String> + '_ {
    move |block, layer, op| {
        let node = node_path(block, layer, op)?;
        let tensor = st.tensor_of(&node)?;
        tensor.strip_suffix(".weight").map(str::to_string)
    }
}

/// A module to write.
struct Planned<'a> {
    key: LoraKey,
    /// The module path in the base model, without `base_model.model.`.
    path: String,
    m: &'a LoraModule,
    rank: u32,
    alpha: f64,
}

fn label(key: &LoraKey) -> String {
    match key.1 {
        Some(i) => format!("layer {i} `{}`", key.2),
        None => format!("{} `{}`", key.0.field(), key.2),
    }
}

/// The workload's Linear `op` of `block`: (in, out).
fn projection(w: &Workload, block: BlockKind, op: &str) -> Option<(u32, u32)> {
    let (_, ops) = w.blocks().into_iter().find(|(k, _)| *k == block)?;
    ops.iter().find_map(|o| match o {
        Op::Linear {
            name,
            in_features,
            out_features,
            ..
        } if name == op => Some((*in_features, *out_features)),
        _ => None,
    })
}

/// PyTorch module names are attribute names and indices; other characters
/// would be regular-expression syntax in PEFT's pattern keys.
fn check_path(path: &str) -> Result<(), String> {
    let ok = path
        .split('.')
        .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "module path `{path}`: expected dot-separated names of letters, digits and `_`"
        ))
    }
}

/// Does PEFT's pattern `key` (a regular expression in which `.` matches any
/// character) pick the module `path`, as `(.*\.)?key$`?
fn peft_key_matches(path: &str, key: &str) -> bool {
    let (p, k) = (path.as_bytes(), key.as_bytes());
    let Some(start) = p.len().checked_sub(k.len()) else {
        return false;
    };
    (start == 0 || p[start - 1] == b'.')
        && p[start..].iter().zip(k).all(|(a, b)| *b == b'.' || a == b)
}

/// The pattern key of `path` among `all` (see the module header).
fn pattern_key(path: &str, all: &[&str]) -> Result<String, String> {
    let rest = path
        .split_once('.')
        .map(|(_, r)| r)
        .filter(|r| !r.starts_with(|c: char| c.is_ascii_digit()));
    for cand in rest.into_iter().chain([path]) {
        if all.iter().all(|&q| q == path || !peft_key_matches(q, cand)) {
            return Ok(cand.to_string());
        }
    }
    let other = all
        .iter()
        .find(|&&q| q != path && peft_key_matches(q, path))
        .copied()
        .unwrap_or_default();
    Err(format!(
        "module path `{path}`: PEFT's rank_pattern / alpha_pattern key for it would also pick `{other}`, so it cannot have its own rank or alpha"
    ))
}

/// The most common value, the smallest on ties.
fn mode<T: Copy>(
    vals: impl Iterator<Item = T>,
    cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
) -> Option<T> {
    let mut v: Vec<T> = vals.collect();
    v.sort_by(&cmp);
    let mut best: Option<(T, usize)> = None;
    let mut i = 0;
    while i < v.len() {
        let j = i + v[i..].iter().take_while(|x| cmp(x, &v[i]).is_eq()).count();
        if best.is_none_or(|(_, n)| j - i > n) {
            best = Some((v[i], j - i));
        }
        i = j;
    }
    best.map(|(x, _)| x)
}

/// `rows x cols` row-major -> `cols x rows`, as little-endian F32 bytes.
fn transposed_le(v: &[f32], rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for j in 0..cols {
        for i in 0..rows {
            out.extend_from_slice(&v[i * cols + j].to_le_bytes());
        }
    }
    out
}

/// Checks every module against the workload and gives it a path and alpha.
fn plan<'a>(
    dir: &Path,
    lora: &'a LoraWeights,
    w: &Workload,
    paths: &ModulePath<'_>,
) -> Result<Vec<Planned<'a>>, AdapterError> {
    let mut out: Vec<Planned<'a>> = Vec::new();
    let mut seen: HashMap<String, LoraKey> = HashMap::new();
    for key in lora.keys() {
        let at = label(&key);
        let bad = |msg: String| err(dir, format!("LoRA module {at}: {msg}"));
        let Some(m) = lora.get(key.0, key.1, &key.2) else {
            return Err(bad("listed but not stored (internal error)".into()));
        };
        match (key.0, key.1) {
            (BlockKind::Layer, Some(i)) if i >= w.num_layers => {
                return Err(bad(format!(
                    "workload `{}` has {} layers",
                    w.name, w.num_layers
                )))
            }
            (BlockKind::Layer, None) => return Err(bad("a layer module without a layer".into())),
            (BlockKind::Embedding | BlockKind::Head, Some(_)) => {
                return Err(bad("a layer index outside the layer block".into()))
            }
            _ => {}
        }
        let Some((i, o)) = projection(w, key.0, &key.2) else {
            return Err(bad(format!(
                "workload `{}` has no Linear `{}` in its {} block",
                w.name,
                key.2,
                key.0.field()
            )));
        };
        if (i as usize, o as usize) != (m.in_features, m.out_features) {
            return Err(bad(format!(
                "adapts {} -> {} but the projection is {i} -> {o}",
                m.in_features, m.out_features
            )));
        }
        let Some(path) = paths(key.0, key.1, &key.2) else {
            return Err(bad("no module path for it".into()));
        };
        check_path(&path).map_err(&bad)?;
        if let Some(prev) = seen.insert(path.clone(), key.clone()) {
            return Err(bad(format!(
                "module path `{path}` is also {}'s",
                label(&prev)
            )));
        }
        let rank = u32::try_from(m.rank).map_err(|_| bad(format!("rank {} too large", m.rank)))?;
        // Exact for ranks below 2^29 (24 + 29 significant bits fit in 53).
        let alpha = m.scaling as f64 * rank as f64;
        if ((alpha / rank as f64) as f32).to_bits() != m.scaling.to_bits() {
            return Err(bad(format!(
                "scaling {} x rank {rank} is not exact in f64: alpha / r would not give the scaling back",
                m.scaling
            )));
        }
        out.push(Planned {
            key,
            path,
            m,
            rank,
            alpha,
        });
    }
    Ok(out)
}

/// The `adapter_config.json` contents and, for the round-trip check, the
/// configuration `load` will read.
fn config(
    plan: &[Planned<'_>],
    dir: &Path,
    meta: &ExportMeta,
) -> Result<(Value, PeftConfig), AdapterError> {
    let f64_cmp = |a: &f64, b: &f64| a.total_cmp(b);
    let r = mode(plan.iter().map(|p| p.rank), |a, b| a.cmp(b)).unwrap_or(1);
    let lora_alpha = mode(
        plan.iter().filter(|p| p.rank == r).map(|p| p.alpha),
        f64_cmp,
    )
    .unwrap_or(r as f64);
    let all: Vec<&str> = plan.iter().map(|p| p.path.as_str()).collect();
    let mut rank_pattern = BTreeMap::new();
    let mut alpha_pattern = BTreeMap::new();
    for p in plan {
        let other_rank = p.rank != r;
        let other_alpha = p.alpha.to_bits() != lora_alpha.to_bits();
        if !(other_rank || other_alpha) {
            continue;
        }
        let key = pattern_key(&p.path, &all)
            .map_err(|e| err(dir, format!("LoRA module {}: {e}", label(&p.key))))?;
        if other_rank {
            rank_pattern.insert(key.clone(), p.rank);
        }
        if other_alpha {
            alpha_pattern.insert(key, p.alpha);
        }
    }
    let targets: Vec<String> = plan.iter().map(|p| p.path.clone()).collect();
    // Sorted keys, as PEFT's `save_pretrained` writes them.
    let mut j: BTreeMap<&str, Value> = BTreeMap::new();
    j.insert("alpha_pattern", json!(alpha_pattern));
    j.insert("base_model_name_or_path", json!(meta.base_model));
    j.insert("bias", json!("none"));
    j.insert("fan_in_fan_out", json!(false));
    j.insert("inference_mode", json!(true));
    j.insert("init_lora_weights", json!(true));
    j.insert("lora_alpha", json!(lora_alpha));
    j.insert("lora_dropout", json!(0.0));
    j.insert("modules_to_save", Value::Null);
    j.insert("peft_type", json!("LORA"));
    j.insert("r", json!(r));
    j.insert("rank_pattern", json!(rank_pattern));
    j.insert("target_modules", json!(targets));
    j.insert("task_type", json!(meta.task_type));
    j.insert("use_dora", json!(false));
    j.insert("use_rslora", json!(false));
    let cfg = PeftConfig {
        peft_type: Some("LORA".into()),
        r,
        lora_alpha,
        target_modules: Some(TargetModules::List(targets)),
        rank_pattern: rank_pattern.into_iter().collect(),
        alpha_pattern: alpha_pattern.into_iter().collect(),
        use_rslora: false,
        use_dora: false,
    };
    Ok((json!(j), cfg))
}

/// Checks that `match_workload` maps every path back to its projection,
/// one module at a time so that an error names the module.
fn check_round_trip(
    dir: &Path,
    plan: &[Planned<'_>],
    cfg: &PeftConfig,
    w: &Workload,
) -> Result<(), AdapterError> {
    for p in plan {
        let path = format!("base_model.model.{}", p.path);
        let one = Adapter {
            dir: dir.to_path_buf(),
            config: cfg.clone(),
            modules: vec![AdapterModule {
                layer: layer_index(&path),
                path,
                in_features: p.m.in_features as u32,
                out_features: p.m.out_features as u32,
                rank: p.rank,
                scaling: p.alpha / p.rank as f64,
            }],
        };
        let back = match match_workload(&one, w) {
            Ok(found) => found.first().map(|m| (m.block, m.layer, m.op.clone())),
            Err(AdapterError::File { msg, .. }) => {
                return Err(err(
                    dir,
                    format!(
                        "LoRA module {}: its module path would not be read back: {msg}",
                        label(&p.key)
                    ),
                ))
            }
        };
        if back.as_ref() != Some(&p.key) {
            let what = back.as_ref().map(label).unwrap_or_else(|| "nothing".into());
            return Err(err(
                dir,
                format!(
                    "LoRA module {}: module path `{}` would be read back as {what}; give a path that ends in the projection's name",
                    label(&p.key),
                    p.path
                ),
            ));
        }
    }
    Ok(())
}

/// Is `b` `a`, bit for bit?
fn same(a: &LoraModule, b: &LoraModule) -> bool {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    (a.in_features, a.out_features, a.rank) == (b.in_features, b.out_features, b.rank)
        && a.scaling.to_bits() == b.scaling.to_bits()
        && bits(&a.a) == bits(&b.a)
        && bits(&a.b) == bits(&b.b)
}

/// What is at the destination.
enum Existing {
    Absent,
    Empty,
    /// A non-empty adapter directory, to be replaced.
    Adapter,
}

fn inspect(dir: &Path, overwrite: bool) -> Result<Existing, AdapterError> {
    let md = match std::fs::symlink_metadata(dir) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(err(dir, e.to_string())),
    };
    if !md.is_dir() {
        return Err(err(
            dir,
            "exists and is not a directory (a file or a symbolic link); refusing to replace it",
        ));
    }
    let mut entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
    if entries.next().is_none() {
        return Ok(Existing::Empty);
    }
    if !overwrite {
        return Err(err(
            dir,
            "exists and is not empty; refusing to overwrite it (choose another directory, or allow overwriting)",
        ));
    }
    if !dir.join("adapter_config.json").is_file() {
        return Err(err(
            dir,
            "is not empty and holds no adapter_config.json; refusing to replace a directory that is not an adapter",
        ));
    }
    Ok(Existing::Adapter)
}

/// A directory removed on drop unless kept.
struct Scratch {
    path: PathBuf,
    keep: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A fresh hidden sibling of `dir`: `.<name>.<tag>-<pid>-<n>`.
fn sibling(parent: &Path, name: &str, tag: &str, create: bool) -> Result<PathBuf, AdapterError> {
    let pid = std::process::id();
    for n in 0..1000 {
        let p = parent.join(format!(".{name}.{tag}-{pid}-{n}"));
        if create {
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(&p, e.to_string())),
            }
        } else if std::fs::symlink_metadata(&p).is_err() {
            return Ok(p);
        }
    }
    Err(err(
        parent,
        format!("no free name for a `.{name}.{tag}-*` directory"),
    ))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), AdapterError> {
    let mut f = std::fs::File::create(path).map_err(|e| err(path, e.to_string()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(path, e.to_string()))
}

/// Writes `lora` (adapting `w`) as a PEFT adapter directory `dir`; see the
/// module header for the files. `paths` names each module in the base
/// model ([`node_path`] without a checkpoint, [`checkpoint_path`] with
/// one); every path must map back to its projection under
/// [`match_workload`]. Refuses an empty `lora`, modules that do not fit
/// `w`, and a non-empty `dir` unless `meta.overwrite`; every error names
/// the directory or file and the module.
pub fn write_peft(
    dir: &Path,
    lora: &LoraWeights,
    w: &Workload,
    paths: &ModulePath<'_>,
    meta: &ExportMeta,
) -> Result<(), AdapterError> {
    if lora.is_empty() {
        return Err(err(dir, "no LoRA modules to export"));
    }
    if let Some(t) = &meta.task_type {
        if !TASK_TYPES.contains(&t.as_str()) {
            return Err(err(
                dir,
                format!(
                    "task_type `{t}` is not one of PEFT's {}",
                    TASK_TYPES.join(", ")
                ),
            ));
        }
    }
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(err(dir, "not a directory name to create"));
    };
    let existing = inspect(dir, meta.overwrite)?;

    // Everything in memory first: nothing touches the disk before the
    // input is known to be good.
    let plan = plan(dir, lora, w, paths)?;
    let (cfg_json, cfg) = config(&plan, dir, meta)?;
    check_round_trip(dir, &plan, &cfg, w)?;
    let cfg_text = serde_json::to_string_pretty(&cfg_json)
        .map_err(|e| err(dir, format!("adapter_config.json: {e}")))?;
    let tensors: Vec<(String, [usize; 2], Vec<u8>)> = plan
        .iter()
        .flat_map(|p| {
            let (m, n, r) = (p.m.in_features, p.m.out_features, p.m.rank);
            let base = format!("base_model.model.{}", p.path);
            [
                (
                    format!("{base}.lora_A.weight"),
                    [r, m],
                    transposed_le(&p.m.a, m, r),
                ),
                (
                    format!("{base}.lora_B.weight"),
                    [n, r],
                    transposed_le(&p.m.b, r, n),
                ),
            ]
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(k, s, b)| {
            TensorView::new(Dtype::F32, s.to_vec(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| err(dir, format!("{k}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let st_meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let st_bytes = safetensors::serialize(views, Some(st_meta))
        .map_err(|e| err(dir, format!("adapter_model.safetensors: {e}")))?;
    let info = json!({
        "generator": format!("aimcsim {}", env!("CARGO_PKG_VERSION")),
        "workload": w.name,
        "source": lora.source,
        "modules": plan.len(),
        "provenance": meta.provenance,
    });
    let info_text =
        serde_json::to_string_pretty(&info).map_err(|e| err(dir, format!("aimcsim.json: {e}")))?;

    // Write a hidden sibling, read it back, then rename it into place.
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| err(&parent, e.to_string()))?;
    let mut tmp = Scratch {
        path: sibling(&parent, name, "tmp", true)?,
        keep: false,
    };
    write_synced(&tmp.path.join("adapter_model.safetensors"), &st_bytes)?;
    write_synced(&tmp.path.join("aimcsim.json"), info_text.as_bytes())?;
    write_synced(&tmp.path.join("adapter_config.json"), cfg_text.as_bytes())?;

    let back = load(&tmp.path)
        .and_then(|a| {
            let m = match_workload(&a, w)?;
            LoraWeights::from_peft(&a, &m)
        })
        .map_err(|e| {
            err(
                dir,
                format!("the written adapter does not read back (internal error): {e}"),
            )
        })?;
    for key in lora.keys() {
        let ok = match (
            lora.get(key.0, key.1, &key.2),
            back.get(key.0, key.1, &key.2),
        ) {
            (Some(a), Some(b)) => same(a, b),
            _ => false,
        };
        if !ok || back.len() != lora.len() {
            return Err(err(
                dir,
                format!(
                    "the written adapter reads back differently at LoRA module {} (internal error)",
                    label(&key)
                ),
            ));
        }
    }

    let move_in = |from: &Path| {
        std::fs::rename(from, dir)
            .map_err(|e| err(dir, format!("moving the new adapter into place: {e}")))
    };
    match existing {
        Existing::Absent => move_in(&tmp.path)?,
        Existing::Empty => {
            std::fs::remove_dir(dir).map_err(|e| err(dir, e.to_string()))?;
            if let Err(e) = move_in(&tmp.path) {
                let _ = std::fs::create_dir(dir);
                return Err(e);
            }
        }
        Existing::Adapter => {
            let old = sibling(&parent, name, "old", false)?;
            std::fs::rename(dir, &old).map_err(|e| err(dir, format!("moving it aside: {e}")))?;
            if let Err(e) = move_in(&tmp.path) {
                if std::fs::rename(&old, dir).is_err() {
                    return Err(err(
                        dir,
                        format!("{e}; the previous adapter is at {}", old.display()),
                    ));
                }
                return Err(e);
            }
            // The new adapter is in place; a leftover hidden `.old` copy is
            // harmless.
            let _ = std::fs::remove_dir_all(&old);
        }
    }
    tmp.keep = true;
    // Make the rename durable where directories can be synced (Unix).
    if let Ok(d) = std::fs::File::open(&parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_match_as_peft_regexes_do() {
        assert!(peft_key_matches(
            "encoder.layer.3.output.dense",
            "layer.3.output.dense"
        ));
        assert!(peft_key_matches(
            "encoder.layer.3.output.dense",
            "encoder.layer.3.output.dense"
        ));
        // On a dot boundary only.
        assert!(!peft_key_matches(
            "encoder.layer.3.output.dense",
            "ayer.3.output.dense"
        ));
        // `.` is any character to PEFT.
        assert!(peft_key_matches("a.bxquery", "b.query"));
        assert!(!peft_key_matches("query", "a.query"));
    }

    #[test]
    fn pattern_keys_single_out_one_module() {
        let all = [
            "encoder.layer.3.output.dense",
            "encoder.layer.3.attention.output.dense",
            "classifier",
        ];
        assert_eq!(pattern_key(all[0], &all).unwrap(), "layer.3.output.dense");
        assert_eq!(pattern_key(all[2], &all).unwrap(), "classifier");
        // `layer.0.q` would start `0.q`: the whole path.
        assert_eq!(
            pattern_key("layer.0.q", &["layer.0.q"]).unwrap(),
            "layer.0.q"
        );
        // `b.query` also picks `a.bxquery`, and so does `a.b.query`.
        let e = pattern_key("a.b.query", &["a.b.query", "a.bxquery"]).unwrap_err();
        assert!(e.contains("a.bxquery"), "{e}");
        // `dense` is the end of `pooler.dense`.
        assert!(pattern_key("dense", &["dense", "pooler.dense"]).is_err());
        assert_eq!(
            pattern_key("pooler.dense", &["dense", "pooler.dense"]).unwrap(),
            "pooler.dense"
        );
    }

    #[test]
    fn mode_takes_the_smallest_on_ties() {
        assert_eq!(mode([4, 2, 4, 2, 8].into_iter(), |a, b| a.cmp(b)), Some(2));
        assert_eq!(mode([4, 2, 4].into_iter(), |a, b| a.cmp(b)), Some(4));
    }
}
