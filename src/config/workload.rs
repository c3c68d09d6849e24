//! The transformer description: a block of operations for the embedding
//! stage, one for a transformer layer (repeated `num_layers` times) and one
//! for the task head, plus the sequence, the token grouping and LoRA.
//!
//! A block is a small dataflow program: each operation names its output
//! tensor (its `name`) and its inputs (`from`, or `q`/`k`/`v`, `a`/`b`,
//! `gate`/`up`); the block's input tensor is called `input` and its output
//! is the last operation's. Widths are features per token.
//!
//! `weights` optionally names a safetensors checkpoint holding the static
//! weights and norm parameters (see [`WeightsSpec`]); only the functional
//! executor reads it.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// A name for reports.
    pub name: String,
    /// Encoder (bidirectional attention) or decoder (causal attention; the
    /// sequence is a prefill).
    #[serde(default = "default_kind")]
    pub kind: ModelKind,
    /// Tokens in the sequence (L).
    pub seq_len: u32,
    /// Tokens processed together as one group on a tile (t).
    #[serde(default = "default_t")]
    pub tokens_per_group: u32,
    /// Features per token entering the embedding block (or the first layer
    /// when there is no embedding block).
    pub input_width: u32,
    /// Operations before the layers (e.g. MobileBERT's embedding transformation).
    #[serde(default)]
    pub embedding: Vec<Op>,
    /// One transformer layer.
    pub layer: Vec<Op>,
    /// How many times `layer` is stacked.
    pub num_layers: u32,
    /// Operations after the layers (e.g. a QA head).
    #[serde(default)]
    pub head: Vec<Op>,
    #[serde(default)]
    pub lora: LoraSpec,
    /// Real weights for the functional executor (`aimcsim functional`):
    /// `None` (the default) draws seeded random ones. Timing ignores it.
    /// (Boxed: keeps `Workload` small where it is held by value.)
    #[serde(default)]
    pub weights: Option<Box<WeightsSpec>>,
    /// A labelled text task for `aimcsim functional` (needs `weights`):
    /// `None` (the default) measures output error on random inputs.
    #[serde(default)]
    pub task: Option<Box<TaskSpec>>,
}

/// Sentence classification on real text, as `aimcsim functional` runs it
/// (see `task::study`): sentences are tokenised, looked up in the
/// checkpoint's embedding tables (word + position + token type 0), run
/// through the graph one sentence per sequence, mean-pooled over their
/// tokens and L2-normalised; a logistic-regression head trained on the
/// digital embeddings of the train split classifies them.
///
/// ```ron
/// task: Some((
///     tokenizer: "$ASSETS/minilm/tokenizer.json",
///     data: "$ASSETS/sentiment",
/// )),
/// ```
///
/// Paths as for [`WeightsSpec::file`]; a leading `$ASSETS` is the asset
/// cache of `scripts/fetch-assets.sh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A Hugging Face `tokenizer.json` (its padding is turned off).
    pub tokenizer: PathBuf,
    /// The directory holding the UCI Sentiment Labelled Sentences as
    /// `imdb.json`, `yelp.json` and `amazon.json` (1,000 `{text, class}`
    /// items each), split as `task::data` documents.
    pub data: PathBuf,
}

/// A safetensors checkpoint (e.g. a Hugging Face `model.safetensors`)
/// holding the workload's static weights and norm parameters:
///
/// ```ron
/// weights: Some((file: "bert-base-uncased/model.safetensors")),
/// ```
///
/// Every Linear and Norm of every block instance is matched to one tensor
/// of the file by name (see `functional::weights_st` for the rule):
/// a Linear `name` to the tensor `<...>.name.weight` (or
/// `<...>.name.dense.weight`) of its layer, stored `out x in` as PyTorch's
/// `nn.Linear` does; a Norm to `<...>.name.weight` (gamma) and
/// `<...>.name.bias` (beta), also under the Hugging Face name `LayerNorm`.
/// Biases of Linear layers are not read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsSpec {
    /// The `.safetensors` file. A relative path is relative to the
    /// directory of the workload file (resolved by
    /// [`load_workload`](crate::config::load_workload); text parsed without
    /// a file, and values given with `--set`, are relative to the working
    /// directory).
    pub file: PathBuf,
    /// The module path of the list of layers, e.g. `"bert.encoder.layer"`
    /// or `"model.layers"`: layer i's tensors are those under
    /// `<layers>.<i>.`, the embedding and head blocks' those outside it.
    /// `None` (the default): a name's layer is the number after its first
    /// `layer.`, `layers.`, `h.` or `blocks.` component (as for PEFT
    /// adapters), and names without one belong to the embedding and head.
    #[serde(default)]
    pub layers: Option<String>,
    /// Explicit module paths by operation name, for names the rule does
    /// not find: `{"lm_head": "model.embed_tokens"}`. The value is the
    /// tensor name without `.weight` (a Norm's beta is `<value>.bias`);
    /// `{i}` in it stands for the layer index. A key must be the name of a
    /// Linear or Norm of the workload; it applies in every block that has
    /// an operation of that name.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

fn default_kind() -> ModelKind {
    ModelKind::Encoder
}
fn default_t() -> u32 {
    8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelKind {
    Encoder,
    Decoder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NormKind {
    LayerNorm,
    RmsNorm,
    /// MobileBERT's element-wise scale and shift.
    NoNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActKind {
    Gelu,
    Relu,
}

/// One operation of a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Op {
    /// A static linear projection `Y = X W` (W is in x out), mapped to AIMC.
    Linear {
        name: String,
        from: String,
        #[serde(rename = "in")]
        in_features: u32,
        #[serde(rename = "out")]
        out_features: u32,
    },
    /// Scaled dot-product attention over the sequence; `q` has `heads`
    /// heads, `k` and `v` have `kv_heads` (grouped-query when fewer). The
    /// output has the width of `q`.
    Attention {
        name: String,
        q: String,
        k: String,
        v: String,
        heads: u32,
        kv_heads: u32,
    },
    Norm {
        name: String,
        from: String,
        kind: NormKind,
    },
    Activation {
        name: String,
        from: String,
        kind: ActKind,
    },
    /// SwiGLU: SiLU(gate) * up.
    Swiglu {
        name: String,
        gate: String,
        up: String,
    },
    /// Element-wise sum (residual connection).
    Add { name: String, a: String, b: String },
}

impl Op {
    pub fn name(&self) -> &str {
        match self {
            Op::Linear { name, .. }
            | Op::Attention { name, .. }
            | Op::Norm { name, .. }
            | Op::Activation { name, .. }
            | Op::Swiglu { name, .. }
            | Op::Add { name, .. } => name,
        }
    }
    /// The tensors this operation reads, with the field each comes from.
    pub fn inputs(&self) -> Vec<(&'static str, &str)> {
        match self {
            Op::Linear { from, .. } | Op::Norm { from, .. } | Op::Activation { from, .. } => {
                vec![("from", from)]
            }
            Op::Attention { q, k, v, .. } => vec![("q", q), ("k", k), ("v", v)],
            Op::Swiglu { gate, up, .. } => vec![("gate", gate), ("up", up)],
            Op::Add { a, b, .. } => vec![("a", a), ("b", b)],
        }
    }
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Linear { .. } => "Linear",
            Op::Attention { .. } => "Attention",
            Op::Norm { .. } => "Norm",
            Op::Activation { .. } => "Activation",
            Op::Swiglu { .. } => "Swiglu",
            Op::Add { .. } => "Add",
        }
    }
}

/// Where LoRA adapters sit and their shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSpec {
    /// Rank r of every adapter (A is in x r, B is r x out).
    pub rank: u32,
    /// Scaling numerator: the branch is scaled by alpha / r.
    pub alpha: f64,
    pub targets: Targets,
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec {
            rank: 8,
            alpha: 32.0,
            targets: Targets::All,
        }
    }
}

/// Which projections carry an adapter (REFERENCE.md §1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Targets {
    /// No adapter anywhere.
    None,
    /// Every linear projection, embedding and head included.
    All,
    /// The projections feeding attention's q, k and v.
    Qkv,
    /// Every layer projection except those feeding q, k and v.
    Ffn,
    /// Projections by name (the name of a Linear in any block).
    Only(Vec<String>),
}

impl std::str::FromStr for Targets {
    type Err = String;
    fn from_str(s: &str) -> Result<Targets, String> {
        match s {
            "none" => Ok(Targets::None),
            "all" => Ok(Targets::All),
            "qkv" => Ok(Targets::Qkv),
            "ffn" => Ok(Targets::Ffn),
            list => {
                let names: Vec<String> = list
                    .split(['+', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    Err("expected all, qkv, ffn, none or projection names joined by '+'".into())
                } else {
                    Ok(Targets::Only(names))
                }
            }
        }
    }
}

/// Which block of the workload an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockKind {
    Embedding,
    Layer,
    Head,
}

impl BlockKind {
    pub fn field(self) -> &'static str {
        match self {
            BlockKind::Embedding => "embedding",
            BlockKind::Layer => "layer",
            BlockKind::Head => "head",
        }
    }
}

impl Workload {
    /// The blocks in execution order with their kind.
    pub fn blocks(&self) -> [(BlockKind, &[Op]); 3] {
        [
            (BlockKind::Embedding, &self.embedding),
            (BlockKind::Layer, &self.layer),
            (BlockKind::Head, &self.head),
        ]
    }

    /// Names of the linear projections that feed an attention's q, k or v
    /// in the layer block.
    pub fn qkv_names(&self) -> Vec<&str> {
        let mut v = Vec::new();
        for op in &self.layer {
            if let Op::Attention { q, k, v: vv, .. } = op {
                v.extend([q.as_str(), k.as_str(), vv.as_str()]);
            }
        }
        v
    }

    /// Does the projection `name` in `block` carry a LoRA adapter?
    pub fn has_lora(&self, block: BlockKind, name: &str) -> bool {
        if self.lora.rank == 0 {
            return false;
        }
        match &self.lora.targets {
            Targets::None => false,
            Targets::All => true,
            Targets::Qkv => block == BlockKind::Layer && self.qkv_names().contains(&name),
            Targets::Ffn => block == BlockKind::Layer && !self.qkv_names().contains(&name),
            Targets::Only(names) => names.iter().any(|n| n == name),
        }
    }

    /// Checks the description; the error is `path: what is wrong`.
    pub fn validate(&self) -> Result<(), String> {
        if self.seq_len == 0 {
            return Err("seq_len: must be at least 1".into());
        }
        if self.tokens_per_group == 0 {
            return Err("tokens_per_group: must be at least 1".into());
        }
        if self.tokens_per_group > self.seq_len {
            return Err(format!(
                "tokens_per_group: {} is larger than seq_len {}",
                self.tokens_per_group, self.seq_len
            ));
        }
        if self.input_width == 0 {
            return Err("input_width: must be at least 1".into());
        }
        if self.num_layers == 0 {
            return Err("num_layers: must be at least 1".into());
        }
        if self.layer.is_empty() {
            return Err("layer: a layer needs at least one operation".into());
        }
        if !(self.lora.alpha.is_finite() && self.lora.alpha >= 0.0) {
            return Err(format!(
                "lora.alpha: {} is not a finite non-negative number",
                self.lora.alpha
            ));
        }
        let emb_out = check_block(BlockKind::Embedding, &self.embedding, self.input_width)?;
        let layer_out = check_block(BlockKind::Layer, &self.layer, emb_out)?;
        if layer_out != emb_out && self.num_layers > 1 {
            return Err(format!(
                "layer: its output is {layer_out} wide but its input is {emb_out} wide; stacked layers need the same width"
            ));
        }
        check_block(BlockKind::Head, &self.head, layer_out)?;
        if self.task.is_some() && self.weights.is_none() {
            return Err(
                "task: a text task needs the checkpoint's embedding tables: add a `weights` section"
                    .into(),
            );
        }
        if let Some(ws) = &self.weights {
            if ws.file.as_os_str().is_empty() {
                return Err("weights.file: must name a .safetensors file".into());
            }
            if ws.layers.as_ref().is_some_and(|l| l.is_empty()) {
                return Err(
                    "weights.layers: must be a module path such as `model.layers`, or None".into(),
                );
            }
            let mut weighted: Vec<&str> = self
                .blocks()
                .iter()
                .flat_map(|(_, ops)| ops.iter())
                .filter(|op| matches!(op, Op::Linear { .. } | Op::Norm { .. }))
                .map(Op::name)
                .collect();
            weighted.sort();
            weighted.dedup();
            for (op, module) in &ws.names {
                if !weighted.contains(&op.as_str()) {
                    return Err(format!(
                        "weights.names: no Linear or Norm named `{op}` (known: {})",
                        weighted.join(", ")
                    ));
                }
                if module.is_empty() {
                    return Err(format!("weights.names.{op}: the tensor name is empty"));
                }
            }
        }
        // LoRA: named targets must exist; the rank must fit every target.
        let mut linears: HashMap<&str, (u32, u32)> = HashMap::new();
        for (_, ops) in self.blocks() {
            for op in ops {
                if let Op::Linear {
                    name,
                    in_features,
                    out_features,
                    ..
                } = op
                {
                    linears.insert(name, (*in_features, *out_features));
                }
            }
        }
        if let Targets::Only(names) = &self.lora.targets {
            for n in names {
                if !linears.contains_key(n.as_str()) {
                    let mut known: Vec<&str> = linears.keys().copied().collect();
                    known.sort();
                    return Err(format!(
                        "lora.targets: no Linear named `{n}` (known: {})",
                        known.join(", ")
                    ));
                }
            }
        }
        for (kind, ops) in self.blocks() {
            for (i, op) in ops.iter().enumerate() {
                if let Op::Linear {
                    name,
                    in_features,
                    out_features,
                    ..
                } = op
                {
                    // A rank above one dimension is still a valid adapter
                    // (the study puts rank 8 on MobileBERT's 512 -> 2 head);
                    // above both it is no low-rank adapter at all.
                    if self.has_lora(kind, name)
                        && self.lora.rank > (*in_features).max(*out_features)
                    {
                        return Err(format!(
                            "lora.rank: {} is larger than {}[{i}] `{name}` ({in_features} -> {out_features})",
                            self.lora.rank,
                            kind.field()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks one block and returns the width of its output.
fn check_block(kind: BlockKind, ops: &[Op], input_width: u32) -> Result<u32, String> {
    let mut widths: HashMap<&str, u32> = HashMap::new();
    widths.insert("input", input_width);
    let mut last = input_width;
    for (i, op) in ops.iter().enumerate() {
        let at = format!("{}[{i}] ({} `{}`)", kind.field(), op.kind_name(), op.name());
        if op.name().is_empty() || op.name() == "input" {
            return Err(format!("{at}.name: must be non-empty and not `input`"));
        }
        if widths.contains_key(op.name()) {
            return Err(format!("{at}.name: `{}` is defined twice", op.name()));
        }
        let mut w = Vec::new();
        for (field, tensor) in op.inputs() {
            match widths.get(tensor) {
                Some(&x) => w.push(x),
                None => {
                    return Err(format!(
                        "{at}.{field}: no tensor `{tensor}` defined before it in this block"
                    ))
                }
            }
        }
        let out = match op {
            Op::Linear {
                in_features,
                out_features,
                ..
            } => {
                if *in_features == 0 || *out_features == 0 {
                    return Err(format!("{at}: in and out must be at least 1"));
                }
                if w[0] != *in_features {
                    return Err(format!(
                        "{at}.in: is {in_features} but its input is {} wide",
                        w[0]
                    ));
                }
                *out_features
            }
            Op::Attention {
                heads, kv_heads, ..
            } => {
                if *heads == 0 || *kv_heads == 0 || heads % kv_heads != 0 {
                    return Err(format!(
                        "{at}: heads ({heads}) must be a positive multiple of kv_heads ({kv_heads})"
                    ));
                }
                if w[0] % heads != 0 {
                    return Err(format!(
                        "{at}.q: width {} is not divisible by {heads} heads",
                        w[0]
                    ));
                }
                let head_dim = w[0] / heads;
                for (field, width) in [("k", w[1]), ("v", w[2])] {
                    if width != head_dim * kv_heads {
                        return Err(format!(
                            "{at}.{field}: width {width} should be kv_heads x head_dim = {kv_heads} x {head_dim}"
                        ));
                    }
                }
                w[0]
            }
            Op::Norm { .. } | Op::Activation { .. } => w[0],
            Op::Swiglu { .. } | Op::Add { .. } => {
                if w[0] != w[1] {
                    return Err(format!(
                        "{at}: its inputs are {} and {} wide; they must match",
                        w[0], w[1]
                    ));
                }
                w[0]
            }
        };
        widths.insert(op.name(), out);
        last = out;
    }
    Ok(last)
}
