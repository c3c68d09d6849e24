//! BERT's input embedding, the part of the model before its first
//! operation on the graph (the embedding LayerNorm): the three lookup
//! tables read from a safetensors checkpoint, their sum per token, the
//! batch of unpadded sentences fed to the graph, and the sentence-level
//! helpers after it (mean pooling, L2 normalisation, cosine similarity).
//!
//! Tables: `embeddings.word_embeddings.weight` (vocab x hidden),
//! `embeddings.position_embeddings.weight` (max positions x hidden) and
//! `embeddings.token_type_embeddings.weight` (types x hidden), optionally
//! prefixed `bert.`; F32, F16 or BF16, converted to f32 on reading.
//!
//! Token p of a sentence with id t is `(word[t] + type[0]) + position[p]`
//! in f32, in that order: Hugging Face's `BertEmbeddings.forward` (and
//! Google's original `embedding_postprocessor`) adds the token-type row to
//! the word row first and the position row after, so the same order gives
//! bit-identical rows. All tokens are of type 0: one sentence per
//! sequence, no pairs.

use super::data::TaskError;
use safetensors::tensor::TensorInfo;
use safetensors::Dtype;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The three tables' names, without the optional `bert.` prefix.
pub const WORD: &str = "embeddings.word_embeddings.weight";
pub const POSITION: &str = "embeddings.position_embeddings.weight";
pub const TOKEN_TYPE: &str = "embeddings.token_type_embeddings.weight";

/// The embedding tables of a BERT checkpoint, as f32.
#[derive(Debug, Clone)]
pub struct EmbeddingTables {
    file: PathBuf,
    /// Names as found in the file (word, position, token type).
    names: [String; 3],
    hidden: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
}

/// A tensor's table-of-contents entry and its resolved name.
struct Entry<'a> {
    name: &'a str,
    info: &'a TensorInfo,
}

impl EmbeddingTables {
    /// Reads the three tables from the safetensors file `path`.
    pub fn open(path: &Path) -> Result<EmbeddingTables, TaskError> {
        let file = path.display().to_string();
        let io = |e: std::io::Error| TaskError::Io {
            file: file.clone(),
            reason: e.to_string(),
        };
        let mut f = File::open(path).map_err(io)?;
        let file_len = f.metadata().map_err(io)?.len();
        let (tensors, data_start) = read_header(&mut f, &file, file_len)?;

        // Each table under its plain name or with the `bert.` prefix.
        let mut found: Vec<Entry> = Vec::new();
        let mut missing = Vec::new();
        for base in [WORD, POSITION, TOKEN_TYPE] {
            let prefixed = format!("bert.{base}");
            match (
                tensors.get_key_value(base),
                tensors.get_key_value(&prefixed),
            ) {
                (Some((name, info)), None) | (None, Some((name, info))) => found.push(Entry {
                    name: name.as_str(),
                    info,
                }),
                (Some(_), Some(_)) => {
                    let reason =
                        format!("both `{base}` and `{prefixed}`: which to use is ambiguous");
                    return Err(TaskError::Format { file, reason });
                }
                (None, None) => missing.push(format!("`{base}` (or `{prefixed}`)")),
            }
        }
        if !missing.is_empty() {
            return Err(TaskError::MissingTensors {
                file,
                tensors: missing,
            });
        }

        let bad = |e: &Entry, reason: String| TaskError::Tensor {
            file: file.clone(),
            tensor: e.name.to_string(),
            reason,
        };
        for e in &found {
            let s = &e.info.shape;
            if s.len() != 2 || s.contains(&0) {
                return Err(bad(
                    e,
                    format!("shape {s:?}; expected [rows, hidden], both non-zero"),
                ));
            }
        }
        let hidden = found[0].info.shape[1];
        for e in &found[1..] {
            if e.info.shape[1] != hidden {
                return Err(bad(
                    e,
                    format!(
                        "shape {:?}: hidden width {}, but `{}` has {hidden}",
                        e.info.shape, e.info.shape[1], found[0].name
                    ),
                ));
            }
        }

        let mut read = |e: &Entry| -> Result<Vec<f32>, TaskError> {
            let elem = match e.info.dtype {
                Dtype::F32 => 4,
                Dtype::F16 | Dtype::BF16 => 2,
                other => {
                    return Err(bad(
                        e,
                        format!("dtype {other:?} is not supported (F32, F16 or BF16)"),
                    ))
                }
            };
            let numel = e.info.shape[0] * e.info.shape[1];
            let (s, end) = e.info.data_offsets;
            if end < s || end - s != numel * elem || data_start + end as u64 > file_len {
                return Err(bad(
                    e,
                    format!(
                        "data offsets {s}..{end} do not hold {numel} {:?} values within the file",
                        e.info.dtype
                    ),
                ));
            }
            let mut bytes = vec![0u8; end - s];
            f.seek(SeekFrom::Start(data_start + s as u64))
                .and_then(|_| f.read_exact(&mut bytes))
                .map_err(|err| bad(e, format!("cannot read: {err}")))?;
            let v = decode(e.info.dtype, &bytes);
            if let Some(k) = v.iter().position(|x| !x.is_finite()) {
                let w = e.info.shape[1];
                return Err(bad(
                    e,
                    format!(
                        "element [{}, {}] is {}; embeddings must be finite",
                        k / w,
                        k % w,
                        v[k]
                    ),
                ));
            }
            Ok(v)
        };
        let word = read(&found[0])?;
        let position = read(&found[1])?;
        let token_type = read(&found[2])?;
        Ok(EmbeddingTables {
            names: [0, 1, 2].map(|k| found[k].name.to_string()),
            hidden,
            vocab: found[0].info.shape[0],
            max_positions: found[1].info.shape[0],
            type_vocab: found[2].info.shape[0],
            word,
            position,
            token_type,
            file: path.to_path_buf(),
        })
    }

    /// The embedding width.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Rows of the word table.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Rows of the position table: the longest sequence.
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Rows of the token-type table.
    pub fn type_vocab(&self) -> usize {
        self.type_vocab
    }

    /// The file the tables came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The tensors read, as named in the file: word, position, token type.
    pub fn tensor_names(&self) -> [&str; 3] {
        [&self.names[0], &self.names[1], &self.names[2]]
    }

    /// The embedding of one sequence: `ids.len() x hidden`, row-major,
    /// row p = `(word[ids[p]] + type[0]) + position[p]` (module header).
    pub fn lookup(&self, ids: &[u32]) -> Result<Vec<f32>, TaskError> {
        if ids.len() > self.max_positions {
            return Err(TaskError::Input(format!(
                "{}: a sequence of {} tokens is longer than the {} positions of `{}`",
                self.file.display(),
                ids.len(),
                self.max_positions,
                self.names[1]
            )));
        }
        let h = self.hidden;
        let ty = &self.token_type[..h];
        let mut out = Vec::with_capacity(ids.len() * h);
        for (p, &id) in ids.iter().enumerate() {
            let t = id as usize;
            if t >= self.vocab {
                return Err(TaskError::Input(format!(
                    "{}: token id {id} at position {p} is outside the vocabulary of {} ids (`{}`)",
                    self.file.display(),
                    self.vocab,
                    self.names[0]
                )));
            }
            let w = &self.word[t * h..(t + 1) * h];
            let pos = &self.position[p * h..(p + 1) * h];
            out.extend(w.iter().zip(ty).zip(pos).map(|((w, y), q)| (w + y) + q));
        }
        Ok(out)
    }
}

/// Reads the safetensors header: the tensors' table of contents and the
/// file offset of the data section.
fn read_header(
    f: &mut File,
    file: &str,
    file_len: u64,
) -> Result<(BTreeMap<String, TensorInfo>, u64), TaskError> {
    let fmt = |reason: String| TaskError::Format {
        file: file.to_string(),
        reason: format!("not a safetensors file: {reason}"),
    };
    let mut n8 = [0u8; 8];
    f.read_exact(&mut n8)
        .map_err(|_| fmt(format!("{file_len} bytes, shorter than the header length")))?;
    let n = u64::from_le_bytes(n8);
    // safetensors' own limit on the header (100 MB).
    if n > 100_000_000 || 8 + n > file_len {
        return Err(fmt(format!(
            "a header of {n} bytes in a file of {file_len} bytes"
        )));
    }
    let mut h = vec![0u8; n as usize];
    f.read_exact(&mut h).map_err(|e| fmt(e.to_string()))?;
    let map: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&h).map_err(|e| fmt(format!("header: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, v) in map {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(v).map_err(|e| fmt(format!("tensor `{name}`: {e}")))?;
        tensors.insert(name, info);
    }
    Ok((tensors, 8 + n))
}

/// Little-endian F32, F16 or BF16 bytes as f32 (other dtypes are rejected
/// before).
fn decode(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    let two = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    match dtype {
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_bits(two(b)).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_bits(two(b)).to_f32())
            .collect(),
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

/// Several sequences' embeddings stacked: the rows of `seqs[0]`, then of
/// `seqs[1]`, ...; never padded, each sequence its own segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `sum(seqs) x hidden`, row-major.
    pub x: Vec<f32>,
    /// Tokens per sequence, in order.
    pub seqs: Vec<usize>,
}

impl Batch {
    /// The lookups of `ids` (each non-empty), concatenated.
    pub fn new<S: AsRef<[u32]>>(tables: &EmbeddingTables, ids: &[S]) -> Result<Batch, TaskError> {
        let mut x = Vec::new();
        let mut seqs = Vec::with_capacity(ids.len());
        for (k, s) in ids.iter().enumerate() {
            let s = s.as_ref();
            // An empty sequence has no mean to pool.
            if s.is_empty() {
                return Err(TaskError::Input(format!(
                    "batch: sequence {k} has no tokens"
                )));
            }
            x.extend(tables.lookup(s)?);
            seqs.push(s.len());
        }
        Ok(Batch { x, seqs })
    }

    /// Rows of `x`: the tokens of all sequences.
    pub fn rows(&self) -> usize {
        self.seqs.iter().sum()
    }
}

/// The mean of each sequence's rows of `y` (`sum(seqs) x width`,
/// row-major, sequences stacked as in [`Batch`]): `seqs.len() x width`.
/// Sums are accumulated in f64 so that long sequences lose nothing to
/// rounding. Errors if `y` does not hold `sum(seqs)` rows of `width`, or
/// a sequence is empty.
pub fn mean_pool(y: &[f32], width: usize, seqs: &[usize]) -> Result<Vec<f32>, TaskError> {
    let rows: usize = seqs.iter().sum();
    if width == 0 || y.len() != rows * width {
        return Err(TaskError::Input(format!(
            "mean_pool: {} values are not {rows} rows (the sum of {} sequence lengths) of width {width}",
            y.len(),
            seqs.len()
        )));
    }
    if let Some(k) = seqs.iter().position(|&n| n == 0) {
        return Err(TaskError::Input(format!(
            "mean_pool: sequence {k} has no rows to average"
        )));
    }
    let mut out = Vec::with_capacity(seqs.len() * width);
    let mut acc = vec![0.0f64; width];
    let mut start = 0;
    for &n in seqs {
        acc.fill(0.0);
        for row in y[start * width..(start + n) * width].chunks_exact(width) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += f64::from(*v);
            }
        }
        out.extend(acc.iter().map(|a| (a / n as f64) as f32));
        start += n;
    }
    Ok(out)
}

/// Scales each row of `v` (`rows x width`) to unit L2 norm (norm in
/// f64). A zero row stays zero, as in PyTorch's `F.normalize` used by
/// sentence-transformers. Errors if `v` is not whole rows of `width`.
pub fn l2_normalize_rows(v: &mut [f32], width: usize) -> Result<(), TaskError> {
    if width == 0 || v.len() % width != 0 {
        return Err(TaskError::Input(format!(
            "l2_normalize_rows: {} values are not whole rows of width {width}",
            v.len()
        )));
    }
    for row in v.chunks_exact_mut(width) {
        let norm = row
            .iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            for x in row.iter_mut() {
                *x = (f64::from(*x) / norm) as f32;
            }
        }
    }
    Ok(())
}

/// The cosine similarity of `a` and `b`, in f64. Errors if their lengths
/// differ, they are empty, or either is zero (the angle is undefined).
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f64, TaskError> {
    if a.len() != b.len() || a.is_empty() {
        return Err(TaskError::Input(format!(
            "cosine: vectors of {} and {} values; equal non-zero lengths expected",
            a.len(),
            b.len()
        )));
    }
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return Err(TaskError::Input(
            "cosine: a zero vector has no direction".into(),
        ));
    }
    Ok(ab / (aa.sqrt() * bb.sqrt()))
}
