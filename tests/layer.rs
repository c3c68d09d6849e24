//! `aimcsim layer`: numbers worked out by hand and the study's calibration
//! points (REFERENCE.md §2).

use aimcsim::config::Architecture;
use aimcsim::timing::summary::{layer, LayerQuery};
use aimcsim::timing::TimingOptions;
use aimcsim::units::Ps;

fn query(m: u32, n: u32, t: u32) -> LayerQuery {
    LayerQuery {
        in_features: m,
        out_features: n,
        rank: 8,
        tokens: t,
        seq_len: 320,
    }
}

fn arch_at(ns: u64) -> Architecture {
    let mut a = Architecture::default();
    a.aimc.integration_time = Ps::from_ns(ns);
    a
}

/// 128 x 128, rank 8, t = 8, 256 ns, with the defaults of paper.ron:
/// AIMC: link latency 10 + one token's load (128 FP16 over 8 B/cycle = 32
/// cycles = 32 ns) + DAC settle 2, then 7 periods of 256 and the last
/// integration 256, then the 76.8 ns readout: 44 + 2048 + 76.8 = 2168.8 ns.
/// PMCA (1 GHz): the DMA moves 8 x 128 FP16 = 2048 B into the output buffer
/// at TCDM address 2176 (after X 2048 B and X A 128 B), which crosses the
/// 4 KiB boundary: bursts of 1920 and 128 B at the link's 8 B/cycle = 240 +
/// 16 cycles, + 10 setup + 10 link latency = 276; the handshake 30; X A:
/// 20 cycles of programming + RedMule (8,128,8) without Y, 588; (X A) B + Y:
/// RedMule (8,8,128), 8 output tiles of 32 cycles + 92 fixed = 348. The
/// transfer waits 0.2 ns for the first PMCA clock edge after the tile ends
/// (2169 ns), so pmca = 276.2 + 30 + 608 + 348 = 1262.2 ns.
#[test]
fn one_group_by_hand() {
    let r = layer(&arch_at(256), &query(128, 128, 8), TimingOptions::default()).unwrap();
    assert_eq!(r.aimc_ns, 2168.8);
    assert!((r.out_transfer_ns - 276.2).abs() < 1e-9);
    assert_eq!(r.post_ns, 30.0);
    assert_eq!(r.lora_down_ns, 608.0);
    assert_eq!(r.lora_up_ns, 348.0);
    assert!((r.pmca_ns - 1262.2).abs() < 1e-9, "{}", r.pmca_ns);
}

/// The LoRA step's live data for 128 x 128, r = 8, t = 8, FP16: X 8x128,
/// X A 8x8, out 8x128, A 128x8, B 8x128 = 2048 + 128 + 2048 + 2048 + 2048 =
/// 8320 B; the schedule adds the next group's X and outputs (2 x 2048) =
/// 12416 B (every buffer is already 64-byte aligned).
#[test]
fn tcdm_bytes_by_hand() {
    let r = layer(&arch_at(256), &query(128, 128, 8), TimingOptions::default()).unwrap();
    assert_eq!(r.tcdm_bytes, 8320);
    assert_eq!(r.tcdm_schedule_bytes, 12416);
    assert!(r.fits_tcdm);
    // 512 x 128 at t = 128: X 131072 + X A 2048 + out 32768 + A 8192 +
    // B 2048 = 176128 B, more than the 128 KiB TCDM: flagged, still timed.
    let r = layer(
        &arch_at(256),
        &query(512, 128, 128),
        TimingOptions::default(),
    )
    .unwrap();
    assert_eq!(r.tcdm_bytes, 176_128);
    assert!(!r.fits_tcdm);
    assert!(r.total_ns > 0.0);
}

/// REFERENCE.md §2: PMCA-to-AIMC ratios of the 128 x 128 rank-8 layer from
/// the study's RTL simulation; the model must land within 15 %.
#[test]
fn calibration_points_within_15_percent() {
    for (t, ns, target) in [(128, 128, 1.04), (8, 256, 0.63), (8, 512, 0.32)] {
        let r = layer(&arch_at(ns), &query(128, 128, t), TimingOptions::default()).unwrap();
        let err = (r.pmca_to_aimc - target).abs() / target;
        assert!(
            err < 0.15,
            "t = {t}, {ns} ns: ratio {:.3} vs {target} ({:.1} %)",
            r.pmca_to_aimc,
            100.0 * err
        );
    }
}

/// The last group holds L mod t tokens: L = 20, t = 8 gives groups of 8, 8
/// and 4, and the tile's work for the whole layer is 20 token periods plus
/// three groups' fixed costs; doubling L with t = L is one group.
#[test]
fn last_group_is_not_padded() {
    let a = arch_at(256);
    let q = LayerQuery {
        seq_len: 20,
        ..query(128, 128, 8)
    };
    let r = layer(&a, &q, TimingOptions::default()).unwrap();
    let q4 = LayerQuery {
        seq_len: 4,
        tokens: 4,
        ..q.clone()
    };
    let r4 = layer(&a, &q4, TimingOptions::default()).unwrap();
    // A group of 4: 44 + 3*256 + 256 + 76.8 = 1144.8 ns on the tile.
    assert_eq!(r4.aimc_ns, 1144.8);
    assert!(r.total_ns > 2.0 * r.aimc_ns + r4.aimc_ns);
}

#[test]
fn lora_costs_time_and_contention_only_delays() {
    let a = arch_at(128);
    let q = query(128, 128, 128);
    let with = layer(&a, &q, TimingOptions::default()).unwrap();
    let ideal = layer(
        &a,
        &q,
        TimingOptions {
            tcdm_contention: false,
        },
    )
    .unwrap();
    assert!(with.total_ns > with.baseline_ns);
    assert!(with.total_ns >= ideal.total_ns);
}

/// 128 x 128, r = 8, t = 8, 256 ns: A and B (2048 B each) stay resident;
/// each group holds X (2048), X A (128) and its output (2048) = 4224 B from
/// the tile's first token to the end of `(X A) B + Y`, 2168.8 + 1262.2 =
/// 3431 ns. The tile starts a group every 2168.8 ns, so two groups overlap
/// at most: peak = 4096 + 2 x 4224 = 12544 B.
#[test]
fn tcdm_occupancy_by_hand() {
    use aimcsim::graph::Graph;
    use aimcsim::mapping::Mapping;
    use aimcsim::timing::occupancy::occupancy;
    use aimcsim::timing::summary::layer_workload;
    let a = arch_at(256);
    let w = layer_workload(&query(128, 128, 8), true);
    let g = Graph::build(&w);
    let m = Mapping::new(&g, &a, 8).unwrap();
    let tl = aimcsim::timing::run(&g, &m, &a, TimingOptions::default());
    let occ = occupancy(&g, &m, &a, &tl);
    assert_eq!(occ.peak, vec![12_544]);
    // Group 0 starts at time 0: resident + one group; the end is back to
    // the resident bytes.
    assert_eq!(
        occ.series[0].first().unwrap(),
        &(aimcsim::units::Ps(0), 8320)
    );
    assert_eq!(occ.series[0].last().unwrap().1, 4096);
}

/// `--tokens auto` picks the candidate with the lowest total latency.
#[test]
fn tokens_auto_picks_the_fastest_candidate() {
    use aimcsim::timing::summary::layer_auto;
    let a = arch_at(256);
    let r = layer_auto(&a, &query(128, 128, 8), TimingOptions::default()).unwrap();
    let auto = r.auto.clone().unwrap();
    assert_eq!(auto.candidates, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 320]);
    for &t in &auto.candidates {
        let other = layer(&a, &query(128, 128, t), TimingOptions::default()).unwrap();
        assert!(r.total_ns <= other.total_ns, "t = {t} is faster");
    }
    assert_eq!(auto.chosen_tokens, r.tokens);
    let fit = auto.best_fitting_tokens.unwrap();
    assert!(
        layer(&a, &query(128, 128, fit), TimingOptions::default())
            .unwrap()
            .fits_tcdm
    );
}

/// `schedule: Concurrent`: `X A` runs while the tile integrates (X is in
/// the TCDM from the start), so after the tile only the output transfer
/// (276.2 ns, see `one_group_by_hand`), the handshake (30) and
/// `(X A) B + Y` (348) remain: 654.2 ns instead of 1262.2.
#[test]
fn concurrent_schedule_hides_x_a() {
    let mut a = arch_at(256);
    a.schedule = aimcsim::config::Schedule::Concurrent;
    let r = layer(&a, &query(128, 128, 8), TimingOptions::default()).unwrap();
    assert!((r.pmca_ns - 654.2).abs() < 1e-9, "{}", r.pmca_ns);
    let study = layer(&arch_at(256), &query(128, 128, 8), TimingOptions::default()).unwrap();
    assert!(r.total_ns <= study.total_ns);
}
