//! The text side of the sentiment task (`aimcsim::task::{tokenize, data,
//! embed}`): token ids against Hugging Face's, the sentence files and
//! their fixed split, the embedding lookup, pooling and normalisation.
//!
//! Tests on the real MiniLM files and UCI sentences are `#[ignore]`d (the
//! assets live outside the repository, see `tests/minilm_assets.rs`): run
//! `scripts/fetch-assets.sh`, then
//! `cargo test --release --test main task_text -- --include-ignored`.
//! The others use tiny files written here, with values worked out by hand.

use aimcsim::task::data::{load_sentiment, Sentence, Split, TaskError};
use aimcsim::task::embed::{cosine, l2_normalize_rows, mean_pool, Batch, EmbeddingTables};
use aimcsim::task::tokenize::TextTokenizer;
use safetensors::tensor::Dtype;
use std::path::Path;

// ---------------------------------------------------------------- assets

use crate::common::asset;

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// tests/data/minilm_reference.json: (text, ids) computed with HF's
/// tokenizers (scripts/minilm_reference.py).
fn reference() -> Vec<(String, Vec<u32>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    json(&path)["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            (s["text"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn minilm_token_ids_equal_hugging_face_ids() {
    let tok = TextTokenizer::open(&asset("minilm/tokenizer.json")).unwrap();
    let refs = reference();
    assert_eq!(refs.len(), 7);
    for (text, ids) in &refs {
        assert_eq!(&tok.encode(text).unwrap(), ids, "{text:?}");
    }
    // Padding is off: the empty sentence is [CLS] [SEP], not 128 ids.
    assert_eq!(refs[6].1, [101, 102]);
    let texts: Vec<&str> = refs.iter().map(|(t, _)| t.as_str()).collect();
    let batch = tok.encode_batch(&texts).unwrap();
    assert_eq!(
        batch,
        refs.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>()
    );

    // Truncation as the file says: 128 ids, [CLS] and [SEP] included.
    // vocab.txt lists the tokens in id order, one a line.
    assert_eq!(tok.max_length(), Some(128));
    let vocab = std::fs::read_to_string(asset("minilm/vocab.txt")).unwrap();
    let id_of = |w: &str| vocab.lines().position(|l| l == w).unwrap() as u32;
    assert_eq!((id_of("[CLS]"), id_of("[SEP]")), (101, 102));
    assert_eq!(tok.token_id("[CLS]"), Some(101));
    let long = tok.encode(&"word ".repeat(300)).unwrap();
    let mut want = vec![id_of("word"); 128];
    (want[0], want[127]) = (101, 102);
    assert_eq!(long, want);
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn minilm_batch_tokenisation_does_not_depend_on_the_thread_count() {
    let tok = TextTokenizer::open(&asset("minilm/tokenizer.json")).unwrap();
    let data = load_sentiment(&asset("sentiment")).unwrap();
    let texts: Vec<&str> = data.all().iter().map(|s| s.text.as_str()).collect();
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| tok.encode_batch(&texts).unwrap())
    };
    let one = run(1);
    assert_eq!(one.len(), 3000);
    assert_eq!(run(4), one);
    for (k, t) in texts.iter().enumerate().step_by(97) {
        assert_eq!(tok.encode(t).unwrap(), one[k], "{t:?}");
    }
    // The reference sentences 0 and 1 are imdb items 0 and 3.
    let refs = reference();
    assert_eq!((texts[0], &one[0]), (refs[0].0.as_str(), &refs[0].1));
    assert_eq!((texts[3], &one[3]), (refs[1].0.as_str(), &refs[1].1));
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn sentiment_dataset_has_the_fixed_split() {
    let dir = asset("sentiment");
    let data = load_sentiment(&dir).unwrap();
    let all = data.all();
    assert_eq!(all.len(), 3000);
    assert_eq!(all.iter().filter(|s| s.label == 1).count(), 1500);
    assert_eq!(all.iter().filter(|s| s.label == 0).count(), 1500);

    // Every sentence is the item it claims to be, in file order.
    for (k, name) in ["imdb", "yelp", "amazon"].into_iter().enumerate() {
        let items = json(&dir.join(format!("{name}.json")));
        let items = items.as_array().unwrap();
        for (i, item) in items[..1000].iter().enumerate() {
            let s = &all[k * 1000 + i];
            assert_eq!((s.source, s.index), (name, i));
            assert_eq!(s.text, item["text"].as_str().unwrap());
            assert_eq!(u64::from(s.label), item["class"].as_u64().unwrap());
        }
    }

    let (test, train) = (data.test(), data.train());
    assert_eq!((test.len(), train.len()), (1000, 2000));
    let at = |s: &Sentence| (s.source, s.index);
    // Test is every third sentence from 0: imdb 0, 3, ..., 999 (334),
    // then global 1002 = yelp 2, ..., then global 2001 = amazon 1, ...,
    // and global 2997 = amazon 997 last.
    assert_eq!(at(test[0]), ("imdb", 0));
    assert_eq!(at(test[1]), ("imdb", 3));
    assert_eq!(at(test[333]), ("imdb", 999));
    assert_eq!(at(test[334]), ("yelp", 2));
    assert_eq!(at(test[667]), ("amazon", 1));
    assert_eq!(at(test[999]), ("amazon", 997));
    assert_eq!(at(train[0]), ("imdb", 1));
    assert_eq!(at(train[1]), ("imdb", 2));
    let refs = reference();
    assert_eq!(test[0].text, refs[0].0);
    assert_eq!(test[1].text, refs[1].0);
    // "Wow... Loved this place." is yelp item 0, global 1000: train.
    assert!(train
        .iter()
        .any(|s| s.text == refs[2].0 && at(s) == ("yelp", 0)));
    for (name, n) in [("imdb", 334), ("yelp", 333), ("amazon", 333)] {
        assert_eq!(test.iter().filter(|s| s.source == name).count(), n);
    }
}

#[test]
#[ignore = "needs scripts/fetch-assets.sh"]
fn minilm_embedding_tables_have_the_config_shapes_and_rows() {
    let file = asset("minilm/model.safetensors");
    let tables = EmbeddingTables::open(&file).unwrap();
    let config = json(&asset("minilm/config.json"));
    let c = |k: &str| config[k].as_u64().unwrap() as usize;
    let shape = (
        tables.vocab(),
        tables.max_positions(),
        tables.type_vocab(),
        tables.hidden(),
    );
    assert_eq!(
        shape,
        (
            c("vocab_size"),
            c("max_position_embeddings"),
            c("type_vocab_size"),
            c("hidden_size")
        )
    );
    assert_eq!(shape, (30522, 512, 2, 384));
    assert_eq!(
        tables.tensor_names(),
        [
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight"
        ]
    );

    // An independent read of the raw tensors.
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let row = |name: &str, r: usize| -> Vec<f32> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        t.data()[r * 384 * 4..(r + 1) * 384 * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let x = tables.lookup(&[101, 102]).unwrap();
    assert_eq!(x.len(), 2 * 384);
    for (p, id) in [101usize, 102].into_iter().enumerate() {
        let w = row("embeddings.word_embeddings.weight", id);
        let q = row("embeddings.position_embeddings.weight", p);
        let t = row("embeddings.token_type_embeddings.weight", 0);
        // HF's BertEmbeddings: word + token type, then + position.
        let want: Vec<f32> = (0..384).map(|j| (w[j] + t[j]) + q[j]).collect();
        assert_eq!(x[p * 384..(p + 1) * 384], want[..], "token {p}");
    }

    let too_long = tables.lookup(&[101; 513]).unwrap_err().to_string();
    assert!(too_long.contains("513 tokens"), "{too_long}");
    assert!(tables.lookup(&[101; 512]).is_ok());
    let oov = tables.lookup(&[101, 30522]).unwrap_err().to_string();
    assert!(oov.contains("30522 at position 1"), "{oov}");
}

// ------------------------------------------------ pooling, normalisation

fn close(a: &[f32], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (f64::from(*x) - y).abs() <= 1e-7 * y.abs().max(1.0),
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn mean_pool_averages_each_sequence() {
    // Width 2: sequence 0 is rows (1, 2), (3, 6); sequence 1 is (5, -1).
    let y = [1.0, 2.0, 3.0, 6.0, 5.0, -1.0];
    assert_eq!(mean_pool(&y, 2, &[2, 1]).unwrap(), [2.0, 4.0, 5.0, -1.0]);
    assert_eq!(mean_pool(&y, 2, &[3]).unwrap(), [3.0, 7.0 / 3.0]);
    // 1e8 + 1 - 1e8 is 0 in f32 (the spacing of f32 at 1e8 is 8) but 1
    // in f64: the mean is 1/3 only if the sum is kept in f64.
    assert_eq!(
        mean_pool(&[1e8, 1.0, -1e8], 1, &[3]).unwrap(),
        [1.0f32 / 3.0]
    );
    assert_eq!(mean_pool(&[], 3, &[]).unwrap(), Vec::<f32>::new());

    let e = mean_pool(&y, 2, &[2, 2]).unwrap_err().to_string();
    assert!(e.contains("6 values are not 4 rows"), "{e}");
    let e = mean_pool(&y, 2, &[3, 0]).unwrap_err().to_string();
    assert!(e.contains("sequence 1"), "{e}");
    assert!(mean_pool(&y, 0, &[]).is_err());
}

#[test]
fn rows_normalise_to_unit_length_and_cosines_are_angles() {
    let mut v = [3.0, 4.0, 0.0, 0.0, -5.0, 12.0];
    l2_normalize_rows(&mut v, 2).unwrap();
    close(&v, &[0.6, 0.8, 0.0, 0.0, -5.0 / 13.0, 12.0 / 13.0]);
    let mut v3 = [1.0, 2.0, 2.0];
    l2_normalize_rows(&mut v3, 3).unwrap();
    close(&v3, &[1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    let e = l2_normalize_rows(&mut [1.0; 5], 2).unwrap_err().to_string();
    assert!(e.contains("5 values"), "{e}");
    assert!(l2_normalize_rows(&mut [1.0; 4], 0).is_err());

    let c = |a: &[f32], b: &[f32]| cosine(a, b).unwrap();
    assert!((c(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-15);
    assert!((c(&[1.0, 2.0, 3.0], &[-2.0, -4.0, -6.0]) + 1.0).abs() < 1e-15);
    assert_eq!(c(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
    // (1, 2, 2) . (2, 1, -2) = 0; (1, 2, 2) . (0, 3, 4) = 14 = 3 * 5 * 14/15.
    assert_eq!(c(&[1.0, 2.0, 2.0], &[2.0, 1.0, -2.0]), 0.0);
    assert!((c(&[1.0, 2.0, 2.0], &[0.0, 3.0, 4.0]) - 14.0 / 15.0).abs() < 1e-15);
    assert!(cosine(&[1.0, 2.0], &[1.0]).is_err());
    assert!(cosine(&[], &[]).is_err());
    assert!(cosine(&[0.0, 0.0], &[1.0, 0.0]).is_err());
}

// ------------------------------------------------------- sentence files

/// Items of a sentence file: (text, class), `None` a null class.
fn items(v: &[(&str, Option<u8>)]) -> String {
    let v: Vec<serde_json::Value> = v
        .iter()
        .map(|(t, c)| serde_json::json!({"text": t, "class": c}))
        .collect();
    serde_json::to_string(&v).unwrap()
}

/// imdb: 4 items and the trailing null; yelp: 2 items, no trailing item;
/// amazon: 3 items and the trailing null.
fn write_sentences(dir: &Path) {
    let files = [
        (
            "imdb",
            items(&[
                ("imdb 0", Some(0)),
                ("imdb 1", Some(1)),
                ("imdb 2", Some(1)),
                ("imdb 3", Some(0)),
                ("", None),
            ]),
        ),
        ("yelp", items(&[("yelp 0", Some(1)), ("yelp 1", Some(0))])),
        (
            "amazon",
            items(&[
                ("amazon 0", Some(1)),
                ("amazon 1", Some(0)),
                ("amazon 2", Some(1)),
                ("", None),
            ]),
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(format!("{name}.json")), text).unwrap();
    }
}

#[test]
fn the_split_takes_every_third_sentence_of_imdb_yelp_amazon() {
    let dir = tempfile::tempdir().unwrap();
    write_sentences(dir.path());
    let data = load_sentiment(dir.path()).unwrap();
    let texts = |v: Vec<&Sentence>| -> Vec<String> { v.iter().map(|s| s.text.clone()).collect() };
    // Global order: imdb 0-3 (0..=3), yelp 0-1 (4, 5), amazon 0-2 (6..=8);
    // test = 0, 3, 6.
    assert_eq!(data.all().len(), 9);
    assert_eq!(texts(data.test()), ["imdb 0", "imdb 3", "amazon 0"]);
    assert_eq!(
        texts(data.train()),
        ["imdb 1", "imdb 2", "yelp 0", "yelp 1", "amazon 1", "amazon 2"]
    );
    assert_eq!(
        data.all()[5],
        Sentence {
            text: "yelp 1".into(),
            label: 0,
            source: "yelp",
            index: 1
        }
    );
    let labels: Vec<u8> = data.test().iter().map(|s| s.label).collect();
    assert_eq!(labels, [0, 0, 1]);
    assert_eq!(
        (0..7).map(Split::of).collect::<Vec<_>>(),
        [
            Split::Test,
            Split::Train,
            Split::Train,
            Split::Test,
            Split::Train,
            Split::Train,
            Split::Test
        ]
    );
    assert_eq!(data.split(Split::Test), data.test());
}

/// The error of loading the files of `write_sentences` with `name.json`
/// replaced by `text` (removed if `None`).
fn load_error(name: &str, text: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_sentences(dir.path());
    let path = dir.path().join(format!("{name}.json"));
    match text {
        Some(t) => std::fs::write(&path, t).unwrap(),
        None => std::fs::remove_file(&path).unwrap(),
    }
    let e = load_sentiment(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "the error names the file: {msg}"
    );
    msg
}

#[test]
fn bad_sentence_files_are_errors_naming_file_and_item() {
    let e = load_error("imdb", Some(r#"{"text": "a", "class": 1}"#));
    assert!(
        e.contains("expected a JSON array") && e.contains("an object"),
        "{e}"
    );
    let e = load_error("imdb", Some("[{\"text\": \"a\", \"class\": 1}"));
    assert!(e.contains("not JSON"), "{e}");

    let e = load_error(
        "yelp",
        Some(&items(&[("a", Some(1)), ("b", Some(2)), ("", None)])),
    );
    assert!(e.contains("item 1:") && e.contains("`class` is 2"), "{e}");
    let e = load_error("yelp", Some(r#"[{"text": "a", "class": 1.0}]"#));
    assert!(e.contains("item 0:") && e.contains("`class` is 1.0"), "{e}");
    let e = load_error("yelp", Some(r#"[{"text": "a", "class": "1"}]"#));
    assert!(
        e.contains("item 0:") && e.contains("expected 0 or 1"),
        "{e}"
    );
    let e = load_error("yelp", Some(r#"[{"text": "a"}]"#));
    assert!(e.contains("item 0: no `class`"), "{e}");

    let e = load_error(
        "amazon",
        Some(&items(&[("a", None), ("b", Some(0)), ("", None)])),
    );
    assert!(e.contains("item 0:") && e.contains("null"), "{e}");
    // Two unlabelled items at the end: only the last may be.
    let e = load_error(
        "amazon",
        Some(&items(&[("a", Some(1)), ("", None), ("", None)])),
    );
    assert!(e.contains("item 1:") && e.contains("null"), "{e}");

    let e = load_error("imdb", Some(r#"[{"text": 3, "class": 1}]"#));
    assert!(e.contains("item 0: `text` is a number"), "{e}");
    let e = load_error("imdb", Some(r#"[{"text": "a", "class": 1}, 7]"#));
    assert!(e.contains("item 1: expected an object"), "{e}");
    let e = load_error("imdb", Some(&items(&[("a", Some(1)), (" ", Some(0))])));
    assert!(e.contains("item 1:") && e.contains("empty"), "{e}");
    let e = load_error("imdb", Some(&items(&[("", None)])));
    assert!(e.contains("no labelled items"), "{e}");

    let e = load_error("amazon", None);
    assert!(e.contains("cannot read"), "{e}");
}

// ------------------------------------------------------------ tokenizer

/// A BERT-style tokenizer.json over a 7-token vocabulary, padding every
/// sequence to 8 and truncating to 5, like MiniLM's file pads to 128.
fn tiny_tokenizer(post_processor: bool) -> String {
    let post = if post_processor {
        serde_json::json!({
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}}
            ],
            "pair": [
                {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "[SEP]", "type_id": 1}}
            ],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}
            }
        })
    } else {
        serde_json::Value::Null
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": {"max_length": 5, "strategy": "LongestFirst", "stride": 0},
        "padding": {
            "strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
            "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"
        },
        "added_tokens": [],
        "normalizer": {
            "type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
            "strip_accents": null, "lowercase": true
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post,
        "decoder": null,
        "model": {
            "type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "world": 4,
                      "[UNK]": 5, "##s": 6}
        }
    })
    .to_string()
}

#[test]
fn tokenizer_adds_cls_sep_and_neither_pads_nor_overruns_truncation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, tiny_tokenizer(true)).unwrap();
    let tok = TextTokenizer::open(&path).unwrap();
    assert_eq!(tok.max_length(), Some(5));
    // Lower-cased, "worlds" = "world" "##s", unknown words [UNK].
    assert_eq!(tok.encode("Hello WORLDS").unwrap(), [1, 3, 4, 6, 2]);
    assert_eq!(tok.encode("hello, foo").unwrap(), [1, 3, 5, 5, 2]);
    assert_eq!(tok.encode("").unwrap(), [1, 2]);
    // Truncated to 5 ids with [CLS] and [SEP] kept.
    assert_eq!(
        tok.encode("hello world hello world").unwrap(),
        [1, 3, 4, 3, 2]
    );
    let texts = ["world", "hello hello", "", "Hello WORLDS"];
    assert_eq!(
        tok.encode_batch(&texts).unwrap(),
        [
            vec![1, 4, 2],
            vec![1, 3, 3, 2],
            vec![1, 2],
            vec![1, 3, 4, 6, 2]
        ]
    );
    assert_eq!(tok.token_id("##s"), Some(6));
    assert_eq!(tok.file(), path.as_path());

    let name = path.display().to_string();
    std::fs::write(&path, tiny_tokenizer(false)).unwrap();
    let e = TextTokenizer::open(&path).unwrap_err().to_string();
    assert!(e.contains(&name) && e.contains("[CLS]"), "{e}");
    std::fs::write(&path, "{\"model\": 3}").unwrap();
    let e = TextTokenizer::open(&path).unwrap_err().to_string();
    assert!(
        e.contains(&name) && e.contains("not a tokenizer.json"),
        "{e}"
    );
    let gone = dir.path().join("absent.json");
    let e = TextTokenizer::open(&gone).unwrap_err().to_string();
    assert!(e.contains(&gone.display().to_string()), "{e}");
}

// ----------------------------------------------------- embedding tables

type T = (String, Dtype, Vec<usize>, Vec<f32>);

fn t(name: &str, dtype: Dtype, shape: &[usize], v: &[f32]) -> T {
    (name.to_string(), dtype, shape.to_vec(), v.to_vec())
}

const WORD: &str = "embeddings.word_embeddings.weight";
const POS: &str = "embeddings.position_embeddings.weight";
const TYPE: &str = "embeddings.token_type_embeddings.weight";

/// Vocabulary 4, 3 positions, 2 types, hidden 2. 1e8 is exact in f32 and
/// f32's spacing there is 8, so sums with it show the order of addition.
fn tiny_tables() -> Vec<T> {
    vec![
        t(
            WORD,
            Dtype::F32,
            &[4, 2],
            &[0.5, 1.0, 2.0, 3.0, 3.0, 1e8, -1.0, 0.25],
        ),
        t(POS, Dtype::F32, &[3, 2], &[1e8, 3.0, 0.5, -1.0, 0.25, 0.75]),
        t(TYPE, Dtype::F32, &[2, 2], &[3.0, 3.0, 100.0, 100.0]),
        t("embeddings.LayerNorm.weight", Dtype::F32, &[2], &[1.0, 1.0]),
    ]
}

fn open_err(dir: &Path, tensors: &[T]) -> String {
    let path = dir.join("model.safetensors");
    crate::common::write_safetensors(&path, tensors);
    let msg = EmbeddingTables::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "the error names the file: {msg}"
    );
    msg
}

#[test]
fn lookup_sums_word_type_and_position_rows_in_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    crate::common::write_safetensors(&path, &tiny_tables());
    let tables = EmbeddingTables::open(&path).unwrap();
    assert_eq!(
        (
            tables.vocab(),
            tables.max_positions(),
            tables.type_vocab(),
            tables.hidden()
        ),
        (4, 3, 2, 2)
    );
    // Row p = (word[id] + type[0]) + position[p], in f32:
    // id 2 at 0: (3 + 3) + 1e8 = 100000006 -> 100000008 (spacing 8);
    //            (1e8 + 3) + 3: 1e8 + 3 -> 1e8, + 3 -> 1e8.
    // (Word + position first would give 1e8 in column 0; an f64 sum
    // 100000008 in column 1.)
    // id 1 at 1: (2 + 3) + 0.5 = 5.5, (3 + 3) - 1 = 5.
    // id 3 at 2: (-1 + 3) + 0.25 = 2.25, (0.25 + 3) + 0.75 = 4.
    let x = tables.lookup(&[2, 1, 3]).unwrap();
    assert_eq!(x, [100_000_008.0, 1e8, 5.5, 5.0, 2.25, 4.0]);
    assert_eq!(tables.lookup(&[]).unwrap(), Vec::<f32>::new());

    // A batch restarts positions for each sequence: id 3 at position 0 is
    // (-1 + 3) + 1e8 = 100000002 -> 1e8, (0.25 + 3) + 3 = 6.25.
    let b = Batch::new(&tables, &[vec![2u32, 1], vec![3]]).unwrap();
    assert_eq!(b.seqs, [2, 1]);
    assert_eq!(b.rows(), 3);
    assert_eq!(b.x, [100_000_008.0, 1e8, 5.5, 5.0, 1e8, 6.25]);
    let e = Batch::new(&tables, &[vec![2u32], vec![]]).unwrap_err();
    assert!(e.to_string().contains("sequence 1"), "{e}");

    let name = path.display().to_string();
    let e = tables.lookup(&[1, 4]).unwrap_err().to_string();
    assert!(
        e.contains(&name) && e.contains("token id 4 at position 1"),
        "{e}"
    );
    let e = tables.lookup(&[0, 0, 0, 0]).unwrap_err().to_string();
    assert!(
        e.contains(&name) && e.contains("4 tokens") && e.contains("3 positions"),
        "{e}"
    );
    assert!(matches!(
        Batch::new(&tables, &[vec![0u32], vec![9]]),
        Err(TaskError::Input(_))
    ));
}

#[test]
fn half_precision_tables_with_a_bert_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // Small binary fractions, exact in F16 and BF16.
    let tensors = vec![
        t(
            &format!("bert.{WORD}"),
            Dtype::F16,
            &[4, 2],
            &[0.5, 1.0, 2.0, 3.0, 4.0, -2.0, -1.0, 0.25],
        ),
        t(
            &format!("bert.{POS}"),
            Dtype::BF16,
            &[3, 2],
            &[1.0, 0.0, 0.5, -1.0, 0.25, 0.75],
        ),
        t(
            &format!("bert.{TYPE}"),
            Dtype::F32,
            &[2, 2],
            &[3.0, 3.0, 100.0, 100.0],
        ),
    ];
    crate::common::write_safetensors(&path, &tensors);
    let tables = EmbeddingTables::open(&path).unwrap();
    assert_eq!(tables.tensor_names()[0], format!("bert.{WORD}"));
    // id 2 at 0: (4 + 3) + 1, (-2 + 3) + 0; id 0 at 1: (0.5 + 3) + 0.5,
    // (1 + 3) - 1.
    assert_eq!(tables.lookup(&[2, 0]).unwrap(), [8.0, 1.0, 4.0, 3.0]);

    // 1e8 overflows F16 to infinity.
    let mut bad = tensors.clone();
    bad[0].3[5] = 1e8;
    let e = open_err(dir.path(), &bad);
    assert!(
        e.contains(&format!("bert.{WORD}")) && e.contains("[2, 1]") && e.contains("finite"),
        "{e}"
    );
    // Both names present is ambiguous.
    let mut both = tensors;
    both.push(t(WORD, Dtype::F32, &[4, 2], &[0.0; 8]));
    let e = open_err(dir.path(), &both);
    assert!(e.contains("ambiguous"), "{e}");
}

#[test]
fn bad_embedding_tables_are_errors_naming_file_and_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let mut ts = tiny_tables();
    ts[1] = t(POS, Dtype::F32, &[2, 3], &[0.0; 6]);
    let e = open_err(d, &ts);
    assert!(
        e.contains(&format!("`{POS}`")) && e.contains("hidden width 3"),
        "{e}"
    );
    assert!(e.contains(&format!("`{WORD}` has 2")), "{e}");

    let ts: Vec<T> = tiny_tables().into_iter().filter(|x| x.0 != TYPE).collect();
    let e = open_err(d, &ts);
    assert!(
        e.contains("missing tensor ") && e.contains(&format!("`{TYPE}`")),
        "{e}"
    );
    assert!(!e.contains(WORD) && !e.contains(POS), "{e}");
    let ts: Vec<T> = tiny_tables().into_iter().filter(|x| x.0 == POS).collect();
    let e = open_err(d, &ts);
    assert!(
        e.contains("missing tensors") && e.contains(WORD) && e.contains(TYPE),
        "{e}"
    );

    let mut ts = tiny_tables();
    ts[0] = t(WORD, Dtype::F32, &[8], &[0.0; 8]);
    let e = open_err(d, &ts);
    assert!(
        e.contains(&format!("`{WORD}`")) && e.contains("shape [8]"),
        "{e}"
    );

    let mut ts = tiny_tables();
    ts[2].1 = Dtype::F64;
    let e = open_err(d, &ts);
    assert!(e.contains(&format!("`{TYPE}`")) && e.contains("F64"), "{e}");

    let path = d.join("model.safetensors");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let e = EmbeddingTables::open(&path).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("not a safetensors"),
        "{e}"
    );
    let gone = d.join("absent.safetensors");
    let e = EmbeddingTables::open(&gone).unwrap_err().to_string();
    assert!(e.contains(&gone.display().to_string()), "{e}");
}
