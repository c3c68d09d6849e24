//! Timing of the cluster DMA (iDMA): how a 1D or 2D transfer splits into
//! bursts and beats, how long it takes alone, and the TCDM-side beats it
//! presents to the TCDM arbiter ([`crate::hw::tcdm`]).
//!
//! # Model
//!
//! - A transfer costs `setup_cycles` to launch (the DMA core's custom
//!   instructions `dmsrc`, `dmdst`, [`dmstr`, `dmrep`,] `dmcpyi` and the
//!   front-end/back-end pipeline until the first request). No published
//!   number exists: the default of 10 cycles is an assumption. A 2D transfer
//!   is launched once and runs as one 1D transfer per row.
//! - The legalizer splits each 1D transfer into bursts that never cross a
//!   `burst_boundary` (4 KiB) on either side: each burst is as long as the
//!   remaining bytes, the bytes left in the source page and those left in
//!   the destination page allow (iDMA `axi_dma_burst_reshaper` /
//!   `idma_legalizer`: "take the boundary that is closer").
//! - The data path moves one `width_bits` beat per cycle on each side. A
//!   burst of `n` bytes starting `o` bytes into a width-aligned word takes
//!   `ceil((o + n) / width)` beats on that side, so a misaligned start can
//!   cost an extra beat (the AXI request is issued aligned, `len = (n + o -
//!   1) >> log2(width)`; the data-flow element realigns the bytes).
//! - A burst takes `max(TCDM-side beats, external-side cycles)` cycles:
//!   read and write run concurrently through the data-flow element. The
//!   external side may be slower ([`ExtLink::bytes_per_cycle`]) and have a
//!   latency ([`ExtLink::latency_cycles`]), counted once per transfer; with
//!   a latency, `max_outstanding` bursts in flight bound the rate at which
//!   short bursts can follow each other.
//! - `burst_gap_cycles` (default 0) are idle cycles after each burst. The
//!   legalizer emits a new burst request every cycle while earlier bursts
//!   move their data, and up to `max_outstanding` (24) are in flight, so
//!   back-to-back bursts run without a bubble.
//!
//! Sources: REFERENCE.md section 5 (512-bit data path, 1D/2D transfers, 24
//! outstanding requests, 4 KiB boundary); pulp-platform/iDMA docs (backend:
//! legalizer, transport layer, data-flow element) and its legalizer source.

use crate::hw::access::{Beat, Phase};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};

/// The AXI4 limit on the beats of one burst; iDMA's page size is
/// `min(256 x width, 4 KiB)`.
pub const AXI_MAX_BURST_BEATS: u64 = 256;

/// The DMA engine's parameters, from the architecture description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DmaParams {
    /// Data-path width, bits (512: 64 bytes per cycle on each side). A power
    /// of two, at least 8.
    pub width_bits: u32,
    /// Cycles to launch one transfer (1D, or 2D as a whole), from the first
    /// DMA instruction to the first bus request. An assumption: no published
    /// number.
    pub setup_cycles: u64,
    /// Bursts never cross a multiple of this address, bytes (`"4KiB"`: the
    /// AXI page). A power of two, at least one beat, at most 256 beats.
    pub burst_boundary: Bytes,
    /// Idle cycles after each burst on the data path, cycles. 0: bursts
    /// follow each other without a bubble.
    pub burst_gap_cycles: u64,
    /// Bursts in flight at once, count (at least 1).
    pub max_outstanding: u32,
}

impl Default for DmaParams {
    /// The study's DMA: 512 bit, 4 KiB bursts, 24 outstanding, 10 cycles of
    /// setup (assumed), no gap between bursts.
    fn default() -> Self {
        DmaParams {
            width_bits: 512,
            setup_cycles: 10,
            burst_boundary: Bytes(4096),
            burst_gap_cycles: 0,
            max_outstanding: 24,
        }
    }
}

/// Which side of a transfer is in the TCDM (its address is relative to the
/// TCDM base, which is aligned to the TCDM's size, so page boundaries are
/// the same as in the global address space). The other side is external
/// (L2, the AIMC tile's output buffer, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcdmSide {
    Src,
    Dst,
}

/// The external side of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtLink {
    /// Bytes per cycle the external side sustains; `None`: as fast as the
    /// DMA's data path. Must not be `Some(0)`.
    pub bytes_per_cycle: Option<u64>,
    /// Cycles from a request to its first data (read) or from the last data
    /// to the response (write); paid once per transfer, and it keeps each
    /// in-flight burst's slot busy.
    pub latency_cycles: u64,
}

/// A 2D (strided) transfer: `rows` rows of `row_bytes` bytes, row `i` from
/// `src + i * src_stride` to `dst + i * dst_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer2d {
    pub src: u64,
    pub dst: u64,
    pub row_bytes: u64,
    pub src_stride: u64,
    pub dst_stride: u64,
    pub rows: u64,
}

/// One burst of a planned transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaBurst {
    pub src: u64,
    pub dst: u64,
    pub bytes: u64,
    /// Beats on the TCDM side.
    pub tcdm_beats: u64,
    /// Cycles on the external side: its beats at the DMA's width, or the
    /// bytes at the link's rate if slower.
    pub ext_cycles: u64,
    /// Cycles the burst takes: `max(tcdm_beats, ext_cycles, in-flight bound)`.
    pub cycles: u64,
}

/// A transfer split into bursts, with its timing when the DMA runs alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmaPlan {
    pub tcdm_side: TcdmSide,
    /// The data-path width, bytes.
    pub width_bytes: u64,
    /// Cycles before the first data: setup plus the external latency.
    pub launch_cycles: u64,
    pub burst_gap_cycles: u64,
    pub bursts: Vec<DmaBurst>,
}

impl DmaParams {
    /// Checks the parameters; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let w = self.width_bits;
        if w < 8 || !w.is_power_of_two() {
            return Err(format!(
                "width_bits ({w}) must be a power of two of at least 8 bits"
            ));
        }
        let wb = self.width_bytes();
        let b = self.burst_boundary.0;
        if !b.is_power_of_two() || b < wb || b > AXI_MAX_BURST_BEATS * wb {
            return Err(format!(
                "burst_boundary ({}) must be a power of two between one beat ({wb} B) \
                 and {AXI_MAX_BURST_BEATS} beats ({} B), the AXI4 burst limit",
                self.burst_boundary,
                AXI_MAX_BURST_BEATS * wb
            ));
        }
        if self.max_outstanding == 0 {
            return Err("max_outstanding must be at least 1".into());
        }
        Ok(())
    }

    /// Bytes per beat.
    pub fn width_bytes(&self) -> u64 {
        self.width_bits as u64 / 8
    }

    /// Plans a 1D transfer of `bytes` bytes from `src` to `dst`.
    ///
    /// # Panics
    /// If the parameters are invalid or `ext.bytes_per_cycle` is `Some(0)`.
    pub fn plan(
        &self,
        src: u64,
        dst: u64,
        bytes: u64,
        tcdm_side: TcdmSide,
        ext: ExtLink,
    ) -> DmaPlan {
        self.plan_2d(
            &Transfer2d {
                src,
                dst,
                row_bytes: bytes,
                src_stride: 0,
                dst_stride: 0,
                rows: 1,
            },
            tcdm_side,
            ext,
        )
    }

    /// Plans a 2D transfer: one launch, then each row as a 1D transfer.
    ///
    /// # Panics
    /// As [`DmaParams::plan`].
    pub fn plan_2d(&self, t: &Transfer2d, tcdm_side: TcdmSide, ext: ExtLink) -> DmaPlan {
        if let Err(e) = self.validate() {
            panic!("invalid DMA parameters: {e}");
        }
        assert!(
            ext.bytes_per_cycle != Some(0),
            "an external link of 0 bytes per cycle moves nothing"
        );
        let w = self.width_bytes();
        let page = self.burst_boundary.0;
        let out = self.max_outstanding as u64;
        let mut bursts = Vec::new();
        // In-flight bound: each burst holds a slot for latency + its external
        // cycles, so n bursts need at least sum(latency + ext) / out cycles.
        // Rounded on the running sum so the total is exact.
        let mut occupancy = 0u64;
        for row in 0..t.rows {
            let (mut src, mut dst) = (t.src + row * t.src_stride, t.dst + row * t.dst_stride);
            let mut left = t.row_bytes;
            while left > 0 {
                let to_page = |a: u64| page - a % page;
                let n = left.min(to_page(src)).min(to_page(dst));
                let (tcdm, far) = match tcdm_side {
                    TcdmSide::Src => (src, dst),
                    TcdmSide::Dst => (dst, src),
                };
                let tcdm_beats = beat_count(tcdm, n, w);
                let ext_cycles =
                    beat_count(far, n, w).max(ext.bytes_per_cycle.map_or(0, |r| n.div_ceil(r)));
                let before = occupancy.div_ceil(out);
                occupancy += ext.latency_cycles + ext_cycles;
                let in_flight = occupancy.div_ceil(out) - before;
                bursts.push(DmaBurst {
                    src,
                    dst,
                    bytes: n,
                    tcdm_beats,
                    ext_cycles,
                    cycles: tcdm_beats.max(ext_cycles).max(in_flight),
                });
                src += n;
                dst += n;
                left -= n;
            }
        }
        DmaPlan {
            tcdm_side,
            width_bytes: w,
            launch_cycles: self.setup_cycles + ext.latency_cycles,
            burst_gap_cycles: self.burst_gap_cycles,
            bursts,
        }
    }
}

/// Plans a 1D transfer of `bytes` bytes at TCDM address `tcdm_addr` whose
/// external address is not known: it is taken to sit at the same offset in
/// its page and word as the TCDM side (the usual case of buffers laid out
/// alike), so only the TCDM side's boundaries split it. The direction does
/// not change the timing. `ext_bytes_per_cycle`: see
/// [`ExtLink::bytes_per_cycle`]; the external latency is the caller's.
///
/// # Panics
/// As [`DmaParams::plan`].
pub fn transfer_plan(
    params: &DmaParams,
    tcdm_addr: u64,
    bytes: u64,
    ext_bytes_per_cycle: Option<u64>,
) -> DmaPlan {
    let link = ExtLink {
        bytes_per_cycle: ext_bytes_per_cycle,
        latency_cycles: 0,
    };
    params.plan(tcdm_addr, tcdm_addr, bytes, TcdmSide::Src, link)
}

/// The TCDM phases of [`transfer_plan`].
pub fn transfer_phases(
    params: &DmaParams,
    tcdm_addr: u64,
    bytes: u64,
    ext_bytes_per_cycle: Option<u64>,
) -> Vec<Phase> {
    transfer_plan(params, tcdm_addr, bytes, ext_bytes_per_cycle).phases()
}

/// The ideal cycles of [`transfer_plan`]: setup + beats (or the external
/// side's cycles if slower).
pub fn transfer_cycles(
    params: &DmaParams,
    tcdm_addr: u64,
    bytes: u64,
    ext_bytes_per_cycle: Option<u64>,
) -> u64 {
    transfer_plan(params, tcdm_addr, bytes, ext_bytes_per_cycle).ideal_cycles()
}

/// Beats of a `width`-byte data path covering `bytes` bytes from `addr`.
fn beat_count(addr: u64, bytes: u64, width: u64) -> u64 {
    if bytes == 0 {
        0
    } else {
        (addr % width + bytes).div_ceil(width)
    }
}

/// The beats covering `bytes` bytes from `addr`, cut at multiples of `width`.
fn split_beats(addr: u64, bytes: u64, width: u64) -> Vec<Beat> {
    let end = addr + bytes;
    let mut v = Vec::with_capacity(beat_count(addr, bytes, width) as usize);
    let mut a = addr;
    while a < end {
        let next = ((a / width + 1) * width).min(end);
        v.push(Beat {
            addr: a,
            bytes: (next - a) as u32,
        });
        a = next;
    }
    v
}

impl DmaPlan {
    /// Bytes moved.
    pub fn bytes(&self) -> u64 {
        self.bursts.iter().map(|b| b.bytes).sum()
    }

    /// Beats presented to the TCDM.
    pub fn tcdm_beats(&self) -> u64 {
        self.bursts.iter().map(|b| b.tcdm_beats).sum()
    }

    /// Cycles the transfer takes when the DMA has the TCDM to itself:
    /// launch + the bursts' cycles + a gap after each.
    pub fn ideal_cycles(&self) -> u64 {
        self.launch_cycles
            + self
                .bursts
                .iter()
                .map(|b| b.cycles + self.burst_gap_cycles)
                .sum::<u64>()
    }

    /// The transfer as TCDM phases (for the TCDM arbiter, master
    /// [`crate::hw::tcdm::MasterSpec::dma`]): a beat-less launch phase, then
    /// one phase per burst with its TCDM-side beats at their real addresses,
    /// `min_cycles` the burst's cycles and `tail_cycles` the gap. Their
    /// ideal cycles add up to [`DmaPlan::ideal_cycles`].
    pub fn phases(&self) -> Vec<Phase> {
        let mut v = Vec::with_capacity(self.bursts.len() + 1);
        v.push(Phase {
            beats: Vec::new(),
            min_cycles: 0,
            tail_cycles: self.launch_cycles,
        });
        for b in &self.bursts {
            let tcdm = match self.tcdm_side {
                TcdmSide::Src => b.src,
                TcdmSide::Dst => b.dst,
            };
            v.push(Phase {
                beats: split_beats(tcdm, b.bytes, self.width_bytes),
                min_cycles: b.cycles,
                tail_cycles: self.burst_gap_cycles,
            });
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hw::tcdm::{self, MasterSpec, Stream, TcdmParams};

    fn study() -> DmaParams {
        DmaParams::default()
    }

    /// The bursts as (src, dst, bytes, tcdm beats).
    fn summary(p: &DmaPlan) -> Vec<(u64, u64, u64, u64)> {
        p.bursts
            .iter()
            .map(|b| (b.src, b.dst, b.bytes, b.tcdm_beats))
            .collect()
    }

    /// Checks the phases against the plan: beats cover the TCDM bytes
    /// exactly, never cross a width-aligned word, and the ideal cycles add up.
    fn check_phases(p: &DmaPlan) {
        let phases = p.phases();
        assert_eq!(phases.len(), p.bursts.len() + 1);
        let sum: u64 = phases.iter().map(Phase::ideal_cycles).sum();
        assert_eq!(sum, p.ideal_cycles());
        for (ph, b) in phases[1..].iter().zip(&p.bursts) {
            assert_eq!(ph.beats.len() as u64, b.tcdm_beats);
            let start = match p.tcdm_side {
                TcdmSide::Src => b.src,
                TcdmSide::Dst => b.dst,
            };
            let mut a = start;
            for beat in &ph.beats {
                assert_eq!(beat.addr, a);
                assert_eq!(beat.addr / 64, (beat.addr + beat.bytes as u64 - 1) / 64);
                a += beat.bytes as u64;
            }
            assert_eq!(a, start + b.bytes);
        }
    }

    #[test]
    fn default_is_valid_and_parses_from_ron() {
        study().validate().unwrap();
        assert_eq!(study().width_bytes(), 64);
        let p: DmaParams = ron::from_str(r#"(setup_cycles: 25, burst_boundary: "2KiB")"#).unwrap();
        assert_eq!(p.setup_cycles, 25);
        assert_eq!(p.burst_boundary, Bytes(2048));
        assert_eq!(p.width_bits, 512);
        assert!(ron::from_str::<DmaParams>("(width: 512)").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut DmaParams)| {
            let mut p = study();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(bad(|p| p.width_bits = 500).starts_with("width_bits"));
        assert!(bad(|p| p.width_bits = 4).starts_with("width_bits"));
        assert!(bad(|p| p.burst_boundary = Bytes(3072)).starts_with("burst_boundary"));
        assert!(bad(|p| p.burst_boundary = Bytes(32)).starts_with("burst_boundary"));
        // 256 beats x 64 B = 16 KiB is the AXI4 limit.
        assert!(bad(|p| p.burst_boundary = Bytes(32 * 1024)).starts_with("burst_boundary"));
        assert!(bad(|p| p.max_outstanding = 0).starts_with("max_outstanding"));
    }

    #[test]
    fn aligned_1kib_is_setup_plus_16_beats() {
        // 1024 B / 64 B = 16 beats, one burst (no 4 KiB boundary crossed).
        let p = study().plan(0x8000_0000, 0x400, 1024, TcdmSide::Dst, ExtLink::default());
        assert_eq!(summary(&p), vec![(0x8000_0000, 0x400, 1024, 16)]);
        assert_eq!(p.ideal_cycles(), 10 + 16);
        check_phases(&p);
        // Alone on the TCDM, the arbiter agrees.
        let s = Stream {
            master: MasterSpec::dma(),
            start_cycle: 0,
            phases: p.phases(),
        };
        let r = tcdm::simulate(&TcdmParams::default(), &[s]);
        assert_eq!(r[0].finish_cycle, 26);
    }

    #[test]
    fn misaligned_transfer_crossing_two_page_boundaries() {
        // 4152 B from L2 0x8000_0FF0 to TCDM 0x0FF0: both 16 B before a 4 KiB
        // boundary and 48 B into a 64 B word.
        //   burst 0: 0x0FF0..0x1000,   16 B -> ceil((48 + 16) / 64) = 1 beat
        //   burst 1: 0x1000..0x2000, 4096 B -> 64 beats
        //   burst 2: 0x2000..0x2028,   40 B -> 1 beat
        // 66 beats, where an aligned 4152 B would take ceil(4152 / 64) = 65:
        // the misaligned start costs one. Ideal = 10 + 66 = 76.
        let p = study().plan(0x8000_0FF0, 0x0FF0, 4152, TcdmSide::Dst, ExtLink::default());
        assert_eq!(
            summary(&p),
            vec![
                (0x8000_0FF0, 0x0FF0, 16, 1),
                (0x8000_1000, 0x1000, 4096, 64),
                (0x8000_2000, 0x2000, 40, 1),
            ]
        );
        assert_eq!(p.tcdm_beats(), 66);
        assert_eq!(p.ideal_cycles(), 76);
        check_phases(&p);
        let ph = p.phases();
        assert_eq!(
            ph[1].beats,
            vec![Beat {
                addr: 0x0FF0,
                bytes: 16
            }]
        );
        assert_eq!(
            ph[3].beats,
            vec![Beat {
                addr: 0x2000,
                bytes: 40
            }]
        );
    }

    #[test]
    fn bursts_split_at_the_closer_boundary_of_either_side() {
        // 8200 B from L2 0x2000_0F80 (128 B before its page end, word aligned)
        // to TCDM 0x0FF0 (16 B before its page end, 48 B into a word).
        // Each burst = min(left, src to page end, dst to page end):
        //   b0: src 0x2000_0F80 dst 0x0FF0   16 B (dst page)   tcdm 1, ext ceil(16/64) = 1
        //   b1: src 0x2000_0F90 dst 0x1000  112 B (src page)   tcdm 2, ext ceil((16+112)/64) = 2
        //   b2: src 0x2000_1000 dst 0x1070 3984 B (dst page)   tcdm ceil((48+3984)/64) = 63, ext ceil(3984/64) = 63
        //   b3: src 0x2000_1F90 dst 0x2000  112 B (src page)   tcdm 2, ext 2
        //   b4: src 0x2000_2000 dst 0x2070 3976 B (the rest)   tcdm ceil((48+3976)/64) = 63, ext ceil(3976/64) = 63
        // 131 beats on each side (aligned: ceil(8200/64) = 129); ideal 10 + 131.
        let p = study().plan(0x2000_0F80, 0x0FF0, 8200, TcdmSide::Dst, ExtLink::default());
        assert_eq!(
            summary(&p),
            vec![
                (0x2000_0F80, 0x0FF0, 16, 1),
                (0x2000_0F90, 0x1000, 112, 2),
                (0x2000_1000, 0x1070, 3984, 63),
                (0x2000_1F90, 0x2000, 112, 2),
                (0x2000_2000, 0x2070, 3976, 63),
            ]
        );
        let ext: Vec<u64> = p.bursts.iter().map(|b| b.ext_cycles).collect();
        assert_eq!(ext, vec![1, 2, 63, 2, 63]);
        assert_eq!(p.ideal_cycles(), 141);
        check_phases(&p);
    }

    #[test]
    fn tcdm_as_source() {
        // TCDM 0x0030 -> L2 0x9000_0000, 128 B: TCDM side 48 B into a word:
        // ceil((48 + 128) / 64) = 3 beats; L2 side aligned: 2. Burst 3 cycles.
        let p = study().plan(0x30, 0x9000_0000, 128, TcdmSide::Src, ExtLink::default());
        assert_eq!(summary(&p), vec![(0x30, 0x9000_0000, 128, 3)]);
        assert_eq!(p.bursts[0].ext_cycles, 2);
        assert_eq!(p.ideal_cycles(), 13);
        check_phases(&p);
        assert_eq!(
            p.phases()[1].beats[0],
            Beat {
                addr: 0x30,
                bytes: 16
            }
        );
    }

    #[test]
    fn a_slower_external_side_sets_the_pace() {
        // 1 KiB over a 256-bit (32 B/cycle) link: 16 TCDM beats, 1024 / 32 =
        // 32 external cycles -> 10 + 32 = 42. The TCDM still sees 16 beats,
        // spread over a 32-cycle phase.
        let link = ExtLink {
            bytes_per_cycle: Some(32),
            latency_cycles: 0,
        };
        let p = study().plan(0x8000_0000, 0, 1024, TcdmSide::Dst, link);
        assert_eq!(p.ideal_cycles(), 42);
        check_phases(&p);
        let ph = p.phases();
        assert_eq!((ph[1].beats.len(), ph[1].min_cycles), (16, 32));
        // A faster link than the data path changes nothing.
        let fast = ExtLink {
            bytes_per_cycle: Some(128),
            latency_cycles: 0,
        };
        assert_eq!(
            study()
                .plan(0x8000_0000, 0, 1024, TcdmSide::Dst, fast)
                .ideal_cycles(),
            26
        );
    }

    #[test]
    fn latency_is_paid_once_and_bounds_short_bursts() {
        // 8 KiB aligned, latency 20: 2 bursts of 64 beats; slots: (20 + 64) / 24
        // per burst, far below 64. Ideal = 10 + 20 + 128 = 158.
        let lat = ExtLink {
            bytes_per_cycle: None,
            latency_cycles: 20,
        };
        assert_eq!(
            study()
                .plan(0, 0x8000_0000, 8192, TcdmSide::Src, lat)
                .ideal_cycles(),
            158
        );
        // 48 rows of 64 B (1 beat each), latency 47: each burst holds a slot
        // for 48 cycles, 24 slots -> 2 cycles per burst: 48 x 2 = 96 instead
        // of 48. Ideal = 10 + 47 + 96 = 153.
        let lat = ExtLink {
            bytes_per_cycle: None,
            latency_cycles: 47,
        };
        let t = Transfer2d {
            src: 0x8000_0000,
            dst: 0,
            row_bytes: 64,
            src_stride: 4096,
            dst_stride: 64,
            rows: 48,
        };
        let p = study().plan_2d(&t, TcdmSide::Dst, lat);
        assert_eq!(p.bursts.len(), 48);
        assert_eq!(p.ideal_cycles(), 153);
        check_phases(&p);
    }

    #[test]
    fn two_d_transfer_is_one_setup_and_row_bursts() {
        // 4 rows of 100 B, L2 rows 128 B apart (aligned), packed in the TCDM
        // from 0 (100 B apart). TCDM beats per row: row 0 at 0: ceil(100/64) = 2;
        // row 1 at 100 (36 into a word): ceil(136/64) = 3; row 2 at 200 (8):
        // ceil(108/64) = 2; row 3 at 300 (44): ceil(144/64) = 3. L2 side: 2
        // each. Bursts 2 + 3 + 2 + 3 = 10 cycles; ideal 10 + 10 = 20, against
        // 4 x (10 + 2..3) = 50 as separate 1D transfers.
        let t = Transfer2d {
            src: 0x8000_0000,
            dst: 0,
            row_bytes: 100,
            src_stride: 128,
            dst_stride: 100,
            rows: 4,
        };
        let p = study().plan_2d(&t, TcdmSide::Dst, ExtLink::default());
        assert_eq!(
            summary(&p),
            vec![
                (0x8000_0000, 0, 100, 2),
                (0x8000_0080, 100, 100, 3),
                (0x8000_0100, 200, 100, 2),
                (0x8000_0180, 300, 100, 3),
            ]
        );
        assert_eq!(p.bytes(), 400);
        assert_eq!(p.ideal_cycles(), 20);
        check_phases(&p);
        let separate: u64 = (0..4)
            .map(|i| {
                study()
                    .plan(
                        0x8000_0000 + 128 * i,
                        100 * i,
                        100,
                        TcdmSide::Dst,
                        ExtLink::default(),
                    )
                    .ideal_cycles()
            })
            .sum();
        assert_eq!(separate, 50);
    }

    #[test]
    fn shorthand_for_an_unknown_external_address() {
        // TCDM 0x0FF0, 4152 B, external side assumed alike: the same 3 bursts
        // and 66 beats as the page-crossing test -> 76 cycles; over a 32 B/cycle
        // link each burst takes its bytes / 32: 1 + 128 + 2 = 131 -> 141.
        assert_eq!(transfer_cycles(&study(), 0x0FF0, 4152, None), 76);
        assert_eq!(transfer_cycles(&study(), 0x0FF0, 4152, Some(32)), 141);
        let ph = transfer_phases(&study(), 0x0FF0, 4152, None);
        assert_eq!(
            ph.iter().map(|p| p.beats.len()).collect::<Vec<_>>(),
            vec![0, 1, 64, 1]
        );
        assert_eq!(ph.iter().map(Phase::ideal_cycles).sum::<u64>(), 76);
    }

    #[test]
    fn burst_gap_is_paid_per_burst() {
        // 3 bursts (as in the page-crossing test), gap 2: 76 + 3 x 2 = 82.
        let d = DmaParams {
            burst_gap_cycles: 2,
            ..study()
        };
        let p = d.plan(0x8000_0FF0, 0x0FF0, 4152, TcdmSide::Dst, ExtLink::default());
        assert_eq!(p.ideal_cycles(), 82);
        check_phases(&p);
    }

    #[test]
    fn empty_transfer_costs_the_setup() {
        let p = study().plan(0, 0x8000_0000, 0, TcdmSide::Src, ExtLink::default());
        assert!(p.bursts.is_empty());
        assert_eq!(p.ideal_cycles(), 10);
        check_phases(&p);
    }

    #[test]
    fn dma_phases_contend_with_redmule_in_the_tcdm() {
        // The DMA writes 2 aligned beats to superbank 0 after its 10-cycle
        // setup; RedMule reads banks 0-3 at cycles 10, 11. Cycle 10: both want
        // banks 0-3, the DMA wins; RedMule's first beat goes at 11, its second
        // at 12 -> finish 13 (one late). The DMA is undisturbed: 10 + 2 = 12.
        let p = study().plan(0x8000_0000, 0, 128, TcdmSide::Dst, ExtLink::default());
        let dma = Stream {
            master: MasterSpec::dma(),
            start_cycle: 0,
            phases: p.phases(),
        };
        let rm = Stream {
            master: MasterSpec::redmule(),
            start_cycle: 10,
            phases: vec![Phase {
                beats: vec![
                    Beat { addr: 0, bytes: 32 },
                    Beat {
                        addr: 256,
                        bytes: 32,
                    },
                ],
                min_cycles: 0,
                tail_cycles: 0,
            }],
        };
        let r = tcdm::simulate(&TcdmParams::default(), &[dma, rm]);
        assert_eq!((r[0].finish_cycle, r[1].finish_cycle), (12, 13));
        assert_eq!(r[1].stall_cycles, 1);
    }
}
