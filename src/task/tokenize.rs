//! Text to token ids with a Hugging Face `tokenizer.json` (for
//! all-MiniLM-L6-v2: BERT's lower-casing normaliser, WordPiece, and a
//! post-processor that adds `[CLS]` ... `[SEP]`).
//!
//! Padding is turned off: the MiniLM file pads every sequence to 128 with
//! `[PAD]`, but here each sentence is its own segment (no attention mask),
//! so padding would change the mean-pooled embedding. Truncation is kept
//! as the file sets it (MiniLM: 128 tokens, special tokens included),
//! which is what the reference embeddings were computed with.

use super::data::TaskError;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// A tokenizer read from a `tokenizer.json`, padding off.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    file: PathBuf,
}

impl TextTokenizer {
    /// Reads `path` (a `tokenizer.json`).
    pub fn open(path: &Path) -> Result<TextTokenizer, TaskError> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| TaskError::Io {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let mut inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TaskError::Tokenizer {
                file: file.clone(),
                reason: format!("not a tokenizer.json: {e}"),
            })?;
        // Without a post-processor the ids would lack the [CLS]/[SEP]
        // the model was trained with, silently.
        if inner.get_post_processor().is_none() {
            return Err(TaskError::Tokenizer {
                file,
                reason: "no post_processor, so no [CLS]/[SEP] would be added".into(),
            });
        }
        inner.with_padding(None);
        Ok(TextTokenizer {
            inner,
            file: path.to_path_buf(),
        })
    }

    /// The ids of `text`, special tokens included, truncated as the file
    /// says.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TaskError> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| TaskError::Tokenizer {
                file: self.file.display().to_string(),
                reason: format!("cannot encode {text:?}: {e}"),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// [`encode`](Self::encode) of each text, in order, on the current
    /// rayon pool. Each text is encoded independently and the results are
    /// collected in input order, and on failure the error of the first
    /// failing text is returned, so nothing depends on the thread count.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
    ) -> Result<Vec<Vec<u32>>, TaskError> {
        // Collecting straight into a Result would return whichever error
        // a thread met first; collect all, then take the first in order.
        let all: Vec<Result<Vec<u32>, TaskError>> =
            texts.par_iter().map(|t| self.encode(t.as_ref())).collect();
        all.into_iter().collect()
    }

    /// The truncation length the file sets (tokens, special tokens
    /// included), if any.
    pub fn max_length(&self) -> Option<usize> {
        self.inner.get_truncation().map(|t| t.max_length)
    }

    /// The id of a token of the vocabulary (e.g. `[CLS]`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The file the tokenizer came from.
    pub fn file(&self) -> &Path {
        &self.file
    }
}
