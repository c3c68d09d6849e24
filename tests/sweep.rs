//! Sweeps: byte-identical output, resuming an interrupted sweep, the same
//! rows at any thread count, bad specifications refused before any work.

use aimcsim::config::Architecture;
use aimcsim::report::Format;
use aimcsim::sweep::{self, Output, SweepSpec, SweepTarget, Tokens};
use aimcsim::units::Ps;
use std::process::Command;

fn spec() -> SweepSpec {
    SweepSpec {
        target: SweepTarget::Layer {
            in_features: 128,
            out_features: 128,
            seq_len: 64,
        },
        arch: Architecture::default(),
        integration_times: vec![Ps::from_ns(128), Ps::from_ns(256)],
        tokens: vec![Tokens::Fixed(8), Tokens::Fixed(16)],
        ranks: vec![4, 8],
        targets: vec![],
        sets: vec![(
            "arch.link.width_bits".into(),
            vec!["64".into(), "128".into()],
        )],
        tcdm_contention: true,
    }
}

fn run_to(path: &std::path::Path, resume: bool) -> String {
    let s = spec();
    let combos = s.check().unwrap();
    let out = Output {
        path: Some(path.to_path_buf()),
        format: Format::Csv,
        resume,
        progress: false,
    };
    sweep::run(&s, &combos, &out).unwrap();
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn combinations_and_their_order() {
    let c = spec().combos();
    // 2 integration times x 2 t x 2 ranks x 2 link widths.
    assert_eq!(c.len(), 16);
    assert_eq!(c[0].integration_time, Some(Ps::from_ns(128)));
    assert_eq!(c[1].sets[0].1, "128");
    assert_eq!(c[2].rank, Some(8));
    assert_eq!(c[4].tokens, Some(Tokens::Fixed(16)));
    assert_eq!(c[8].integration_time, Some(Ps::from_ns(256)));
    assert!(c.iter().enumerate().all(|(i, x)| x.index == i));
}

#[test]
fn same_command_same_bytes_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    let full = run_to(&dir.path().join("a.csv"), false);
    assert_eq!(full.lines().count(), 17);
    assert_eq!(run_to(&dir.path().join("b.csv"), false), full);
    // An interrupted sweep: its partial holds the header and two rows.
    let partial_src = dir.path().join("c.csv.partial");
    let s = spec();
    let hash = s.hash();
    let combos = s.combos();
    let mut text = format!("{{\"aimcsim_sweep\":\"{hash}\",\"combinations\":16}}\n");
    for i in [3usize, 7] {
        let row = sweep::run_combo(&s, &hash, &combos[i]).unwrap();
        text.push_str(&serde_json::Value::Object(row).to_string());
        text.push('\n');
    }
    text.push_str("{\"index\": 9, \"trunc"); // cut short by the interruption
    std::fs::write(&partial_src, text).unwrap();
    assert_eq!(run_to(&dir.path().join("c.csv"), true), full);
    assert!(!partial_src.exists());
    // A partial of another sweep is refused.
    std::fs::write(
        dir.path().join("d.csv.partial"),
        "{\"aimcsim_sweep\":\"0000000000000000\",\"combinations\":16}\n",
    )
    .unwrap();
    let s = spec();
    let combos = s.check().unwrap();
    let out = Output {
        path: Some(dir.path().join("d.csv")),
        format: Format::Csv,
        resume: true,
        progress: false,
    };
    let e = sweep::run(&s, &combos, &out).unwrap_err().to_string();
    assert!(e.contains("another sweep"), "{e}");
}

#[test]
fn rows_do_not_depend_on_the_thread_count() {
    let s = spec();
    let combos = s.check().unwrap();
    let out = Output {
        path: None,
        format: Format::Json,
        resume: false,
        progress: false,
    };
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let a = one.install(|| sweep::run(&s, &combos, &out).unwrap());
    let b = two.install(|| sweep::run(&s, &combos, &out).unwrap());
    assert_eq!(a, b);
}

#[test]
fn bad_specifications_exit_2_before_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.csv");
    for args in [
        vec!["sweep", "--in", "128", "--out", "128", "--tokens", "8,400"],
        vec!["sweep", "--in", "128", "--out", "128", "--tokens", ""],
        vec![
            "sweep",
            "--in",
            "128",
            "--out",
            "128",
            "--integration-time",
            "0ns",
        ],
        vec![
            "--set",
            "arch.aimc.bogus=1,2",
            "sweep",
            "--in",
            "8",
            "--out",
            "8",
        ],
        vec!["sweep", "--in", "128", "--tokens", "8"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_aimcsim"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!out.exists(), "{args:?} wrote a file");
        assert!(!dir.path().join("x.csv.partial").exists());
    }
}
