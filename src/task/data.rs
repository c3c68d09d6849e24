//! The labelled sentences of the task, UCI "Sentiment Labelled Sentences"
//! (Kotzias et al., 2015), and their fixed train/test split; also
//! [`TaskError`], the error of the whole `task` module.
//!
//! Input: three files in one directory, `imdb.json`, `yelp.json` and
//! `amazon.json` (as `scripts/fetch-assets.sh` writes them), each a JSON
//! array of `{"text": "...", "class": 0 | 1}` objects (1 positive). The
//! UCI files end with an empty line, which becomes one trailing item with
//! `"class": null`; that item, and only a trailing one, is dropped.
//! Anything else (not an array, an item that is not an object, `text` not
//! a string or blank, `class` missing or not 0/1, a null class before the
//! end) is an error naming the file and the item index.
//!
//! The split, fixed so that every run and every model sees the same
//! sentences: concatenate imdb, yelp, amazon in that order, each in file
//! order (3 x 1,000 = 3,000 sentences); sentence i (0-based, in that
//! order) is in the TEST split when i % 3 == 0 (1,000 sentences), in the
//! TRAIN split otherwise (2,000). Taking every third sentence rather than
//! a block keeps all three sources in both splits (334 imdb, 333 yelp and
//! 333 amazon test sentences) without a random generator.

use std::path::Path;

/// Why a task input (sentence files, tokenizer, checkpoint) or a call
/// cannot be used. Every variant about a file names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    /// The file as a whole is not what it should be (not JSON, not an
    /// array, not a safetensors file, ...).
    #[error("{file}: {reason}")]
    Format { file: String, reason: String },
    /// One item of a sentence file.
    #[error("{file}: item {index}: {reason}")]
    Item {
        file: String,
        index: usize,
        reason: String,
    },
    #[error("{file}: tokenizer: {reason}")]
    Tokenizer { file: String, reason: String },
    /// Tensors a checkpoint lacks, each as looked for.
    #[error("{file}: missing tensor{} {}", if .tensors.len() == 1 { "" } else { "s" }, .tensors.join(", "))]
    MissingTensors { file: String, tensors: Vec<String> },
    /// A tensor with the wrong rank, shape, dtype or content.
    #[error("{file}: tensor `{tensor}`: {reason}")]
    Tensor {
        file: String,
        tensor: String,
        reason: String,
    },
    /// Arguments that do not fit together (lengths, ids out of range).
    #[error("{0}")]
    Input(String),
}

/// The sources, in split order, and their file names (`<source>.json`).
pub const SOURCES: [&str; 3] = ["imdb", "yelp", "amazon"];

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub text: String,
    /// 1 positive, 0 negative.
    pub label: u8,
    /// One of [`SOURCES`].
    pub source: &'static str,
    /// The item's index in its source file (0-based).
    pub index: usize,
}

/// Which side of the fixed split a sentence is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The split of sentence `i` of the concatenation (see the module
    /// header).
    pub fn of(i: usize) -> Split {
        if i % 3 == 0 {
            Split::Test
        } else {
            Split::Train
        }
    }
}

/// All sentences in split order (imdb, yelp, amazon; file order within).
#[derive(Debug, Clone)]
pub struct Dataset {
    sentences: Vec<Sentence>,
}

impl Dataset {
    /// Every sentence, in the order the split is defined on.
    pub fn all(&self) -> &[Sentence] {
        &self.sentences
    }

    /// The sentences of `split`, in order.
    pub fn split(&self, split: Split) -> Vec<&Sentence> {
        self.sentences
            .iter()
            .enumerate()
            .filter(|(i, _)| Split::of(*i) == split)
            .map(|(_, s)| s)
            .collect()
    }

    /// The training sentences (i % 3 != 0), in order.
    pub fn train(&self) -> Vec<&Sentence> {
        self.split(Split::Train)
    }

    /// The test sentences (i % 3 == 0), in order.
    pub fn test(&self) -> Vec<&Sentence> {
        self.split(Split::Test)
    }
}

/// The sentences of `dir/{imdb,yelp,amazon}.json`.
pub fn load_sentiment(dir: &Path) -> Result<Dataset, TaskError> {
    let mut sentences = Vec::new();
    for source in SOURCES {
        read_source(&dir.join(format!("{source}.json")), source, &mut sentences)?;
    }
    Ok(Dataset { sentences })
}

/// Appends the labelled items of one file to `out`.
fn read_source(
    path: &Path,
    source: &'static str,
    out: &mut Vec<Sentence>,
) -> Result<(), TaskError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| TaskError::Io {
        file: file.clone(),
        reason: e.to_string(),
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| TaskError::Format {
        file: file.clone(),
        reason: format!("not JSON: {e}"),
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(TaskError::Format {
            file,
            reason: format!(
                "expected a JSON array of {{\"text\", \"class\"}} items, found {}",
                kind(&value)
            ),
        });
    };
    let item_err = |index: usize, reason: String| TaskError::Item {
        file: file.clone(),
        index,
        reason,
    };
    let n = items.len();
    let before = out.len();
    for (index, item) in items.iter().enumerate() {
        let serde_json::Value::Object(obj) = item else {
            return Err(item_err(
                index,
                format!("expected an object, found {}", kind(item)),
            ));
        };
        let text = match obj.get("text") {
            Some(serde_json::Value::String(s)) => s,
            Some(v) => return Err(item_err(index, format!("`text` is {}", kind(v)))),
            None => return Err(item_err(index, "no `text`".into())),
        };
        let label = match obj.get("class") {
            None => return Err(item_err(index, "no `class`".into())),
            // The UCI files' final empty line: dropped, if it is last.
            Some(serde_json::Value::Null) if index + 1 == n => continue,
            Some(serde_json::Value::Null) => {
                return Err(item_err(
                    index,
                    format!(
                        "`class` is null, allowed only for the last item (item {})",
                        n - 1
                    ),
                ))
            }
            Some(c) => match c.as_u64() {
                Some(l @ (0 | 1)) => l as u8,
                _ => {
                    return Err(item_err(
                        index,
                        format!("`class` is {c}; expected 0 or 1 (or null for the last item)"),
                    ))
                }
            },
        };
        if text.trim().is_empty() {
            return Err(item_err(index, "labelled item with empty `text`".into()));
        }
        out.push(Sentence {
            text: text.clone(),
            label,
            source,
            index,
        });
    }
    if out.len() == before {
        return Err(TaskError::Format {
            file,
            reason: "no labelled items".into(),
        });
    }
    Ok(())
}

/// A JSON value's kind, for messages.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
