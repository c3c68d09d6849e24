//! RedMule, the PMCA's FP16 matrix engine: its parameters, the cycles of one
//! GEMM job `Z (M x K) = X (M x N) W (N x K) [+ Y]` from the trigger to the
//! done event, and the job's TCDM traffic beat by beat (for the bank model).
//!
//! Sources (REFERENCE.md §4): pulp-platform/redmule RTL (`redmule_pkg.sv`,
//! `redmule_tiler.sv`, `redmule_scheduler.sv`, `redmule_memory_scheduler.sv`,
//! `redmule_ctrl.sv`) and GVSoC's `light_redmule.cpp`. Timing rules, with
//! `R` = `rows`, `U` = `units`, `P` = `pipe_regs`:
//!
//! - Output tiles are `R x U*(P+1)` elements of Z (8 x 16), walked row tile
//!   by row tile, and within a row tile column tile by column tile. Each
//!   output tile streams the whole reduction N.
//! - The array takes one W row (one port word: the tile's `U*(P+1)` columns
//!   of one row of W) every `P+1` cycles (the scheduler's LOAD_W state then
//!   `P` WAIT states), and the tiler pads the W rows to a multiple of `U`.
//!   So a tile's array time is `(P+1) * roundup(N, U)`: 16 W rows (one
//!   16-element reduction chunk) take 64 cycles, at full utilisation. The RTL
//!   shows no bubble between chunks or tiles (the 16-tile measurement costs
//!   exactly 15 x 512 cycles more than the 1-tile one).
//! - One `port_bits` port serves every operand, one word per cycle. During a
//!   tile it carries the tile's W rows, the X words of its later reduction
//!   chunks and of the next tile's first chunk (one word per real X row and
//!   16-element chunk), the next tile's Y (`R` words) and the previous
//!   tile's Z (`R` words). Y and Z always move the full array height, even
//!   when fewer rows of M remain. A tile lasts `max(port words, array
//!   cycles)`: for small N the port, not the array, is the bound.
//! - Fixed costs: the trigger latency and the tiler's loop-bound computation;
//!   the preload of the first X chunk and first Y before the array starts;
//!   the drain after the last W row (`P+1` cycles through the pipeline, then
//!   the last tile leaves the array one output column per cycle); the store
//!   of the last tile's Z; and the streamers' and controller's latency.
//!
//! Register programming (about 8 register writes, 2 job contexts) is the
//! programming core's cost and is not part of a job's cycles here.

use crate::hw::access::{Beat, Phase};
use serde::{Deserialize, Serialize};

/// Bits of one FP16 element.
const FP16_BITS: u64 = 16;
/// Bytes of one FP16 element.
const FP16_BYTES: u64 = 2;

/// Parameters of one RedMule instance. Cycles are of the PMCA clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedMuleParams {
    /// Rows of the array (RTL `ARRAY_WIDTH`), a count: rows of Z computed
    /// at once, one row of FMA units each. The study's build has 8.
    pub rows: u32,
    /// FMA units chained in each row (RTL `ARRAY_HEIGHT`), a count: 4.
    pub units: u32,
    /// Pipeline registers in each FMA unit (RTL `PIPE_REGS`), a count: 3.
    /// Each unit interleaves `pipe_regs + 1` output columns, so an output
    /// tile is `units * (pipe_regs + 1)` columns wide.
    pub pipe_regs: u32,
    /// Data width of the TCDM port in bits (RTL `DATA_W` minus the 32 bits
    /// that serve misaligned accesses): 256, i.e. 16 FP16 values per cycle.
    pub port_bits: u32,
    /// Cycles from the trigger write to the controller starting the streams
    /// when the loop bounds are already computed (about 5 on the RTL when
    /// the configuration was written 50+ cycles before the trigger).
    pub trigger_latency_cycles: u64,
    /// Cycles of the tiler computing the loop bounds (sequential
    /// multipliers) that a trigger issued right after the configuration
    /// writes waits for: about 33 - 5 = 28 on the RTL.
    pub tiler_cycles: u64,
    /// Cycles of streamer and controller latency beyond the port words
    /// themselves: request-to-data at the first loads, buffer-to-port at the
    /// last store, and the controller's steps from the last store to the done
    /// event. Not separately observable in the RTL measurements: it is what
    /// remains of their fixed cost once the tiler, the first loads, the
    /// drain and the last store are accounted for (596 - 581 = 15).
    pub stream_latency_cycles: u64,
    /// Memory-mapped register writes a core makes to program one job, a
    /// count (about 8). Their cycles are the core's (see
    /// `SnitchParams::redmule_program_cycles`), not the job's.
    pub config_register_writes: u32,
    /// Job contexts, a count (RTL `N_CONTEXT` = 2): while one job runs the
    /// next can be programmed.
    pub job_contexts: u32,
}

impl Default for RedMuleParams {
    /// The study's 32-FMA build: 8 rows x 4 units x 3 pipeline registers.
    fn default() -> Self {
        RedMuleParams {
            rows: 8,
            units: 4,
            pipe_regs: 3,
            port_bits: 256,
            trigger_latency_cycles: 5,
            tiler_cycles: 28,
            stream_latency_cycles: 15,
            config_register_writes: 8,
            job_contexts: 2,
        }
    }
}

impl RedMuleParams {
    /// Checks the parameters; the error starts with the offending field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("rows", self.rows),
            ("units", self.units),
            ("pipe_regs", self.pipe_regs),
            ("port_bits", self.port_bits),
            ("job_contexts", self.job_contexts),
        ] {
            if v == 0 {
                return Err(format!("{name}: must be at least 1"));
            }
        }
        // redmule_pkg: ARRAY_WIDTH <= ARRAY_HEIGHT * PIPE_REGS ("superior
        // limit"): the rows share the X buffer's feed within one pass of a
        // W row through a unit's pipeline.
        let max_rows = self.units as u64 * self.pipe_regs as u64;
        if self.rows as u64 > max_rows {
            return Err(format!(
                "rows: {} exceeds units * pipe_regs = {} * {} = {max_rows}",
                self.rows, self.units, self.pipe_regs
            ));
        }
        // redmule_tiler asserts DataW == Height * (PipeRegs + 1) * 16: one
        // port word is exactly one W row of an output tile.
        let word = self.tile_cols() * FP16_BITS;
        if self.port_bits as u64 != word {
            return Err(format!(
                "port_bits: {} must equal units * (pipe_regs + 1) * 16 = {word} \
                 (one port word carries one FP16 row of an output tile)",
                self.port_bits
            ));
        }
        Ok(())
    }

    /// Columns of Z in one output tile: `units * (pipe_regs + 1)`.
    pub fn tile_cols(&self) -> u64 {
        self.units as u64 * (self.pipe_regs as u64 + 1)
    }

    /// FP16 elements in one port word: the reduction chunk of one X word.
    pub fn word_elems(&self) -> u64 {
        self.port_bits as u64 / FP16_BITS
    }

    /// Bytes of one port word.
    pub fn word_bytes(&self) -> u64 {
        self.port_bits as u64 / 8
    }

    /// FMA units of the array, i.e. MACs per cycle at full utilisation.
    pub fn fmas(&self) -> u64 {
        self.rows as u64 * self.units as u64
    }
}

/// Cycles of one job from the trigger to the done event with ideal 1-cycle
/// memory, register programming excluded. All fields are PMCA cycles except
/// the two counts at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobCycles {
    /// `trigger_latency_cycles`.
    pub trigger: u64,
    /// `tiler_cycles` (exposed: the trigger follows the configuration).
    pub tiler: u64,
    /// Port words of the first X chunk and first Y before the array starts.
    pub preload: u64,
    /// Sum over output tiles of `max(port words, array cycles)`.
    pub tiles: u64,
    /// Sum over output tiles of the array cycles alone (`<= tiles`).
    pub array: u64,
    /// `pipe_regs + 1` plus the last tile's columns, leaving the array.
    pub drain: u64,
    /// Port words of the last tile's Z (the full array height).
    pub store: u64,
    /// `stream_latency_cycles`.
    pub stream_latency: u64,
    /// The sum of the above: trigger to done.
    pub total: u64,
    /// Output tiles, a count.
    pub tile_count: u64,
    /// Port words moved by the whole job, a count.
    pub port_words: u64,
}

impl JobCycles {
    /// Cycles the tiles lost to the port beyond the array's own time.
    pub fn port_bound(&self) -> u64 {
        self.tiles - self.array
    }
}

/// Byte addresses in the TCDM (relative to its base) of a job's row-major
/// FP16 matrices. `y_addr: None` is a plain `Z = X W` (no Y stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operands {
    pub x_addr: u64,
    pub w_addr: u64,
    pub y_addr: Option<u64>,
    pub z_addr: u64,
}

/// Multiply-accumulates of `Z (M x K) = X (M x N) W (N x K)`.
pub fn macs(m: u64, n: u64, k: u64) -> u64 {
    m * n * k
}

/// Fraction of the array's FMA slots doing useful MACs over `cycles`.
pub fn utilisation(p: &RedMuleParams, m: u64, n: u64, k: u64, cycles: u64) -> f64 {
    if cycles == 0 {
        return 0.0;
    }
    macs(m, n, k) as f64 / (cycles as f64 * p.fmas() as f64)
}

/// Cycles of `Z = X W + Y` (the measured case, and the study's fused add).
/// A zero dimension is no job: all zero.
pub fn job_cycles(p: &RedMuleParams, m: u64, n: u64, k: u64) -> JobCycles {
    cycles(p, m, n, k, true)
}

/// Cycles of `Z = X W` (no Y stream).
pub fn matmul_cycles(p: &RedMuleParams, m: u64, n: u64, k: u64) -> JobCycles {
    cycles(p, m, n, k, false)
}

/// The tiling of one job and its port-word counts, shared by the cycle
/// count and the beat list so that the two always agree.
struct Tiling {
    rows: u64,
    tile_cols: u64,
    word_elems: u64,
    word_bytes: u64,
    m: u64,
    n: u64,
    k: u64,
    with_y: bool,
    /// Column tiles along K.
    col_tiles: u64,
    /// Output tiles.
    tiles: u64,
    /// 16-element reduction chunks along N (one X word per row each).
    chunks: u64,
    /// W rows streamed per tile: N rounded up to a multiple of `units`.
    w_rows: u64,
    /// Array cycles per tile.
    array: u64,
    pipe: u64,
}

impl Tiling {
    fn new(p: &RedMuleParams, m: u64, n: u64, k: u64, with_y: bool) -> Tiling {
        debug_assert!(p.validate().is_ok(), "{:?}", p.validate());
        let rows = p.rows as u64;
        let units = p.units as u64;
        let pipe = p.pipe_regs as u64 + 1;
        let col_tiles = k.div_ceil(p.tile_cols());
        let w_rows = n.div_ceil(units) * units;
        Tiling {
            rows,
            tile_cols: p.tile_cols(),
            word_elems: p.word_elems(),
            word_bytes: p.word_bytes(),
            m,
            n,
            k,
            with_y,
            col_tiles,
            tiles: m.div_ceil(rows) * col_tiles,
            chunks: n.div_ceil(p.word_elems()),
            w_rows,
            array: pipe * w_rows,
            pipe,
        }
    }

    /// (row tile, column tile) of output tile `t`.
    fn ij(&self, t: u64) -> (u64, u64) {
        (t / self.col_tiles, t % self.col_tiles)
    }

    /// Real rows of M in row tile `i` (X reads only these).
    fn real_rows(&self, i: u64) -> u64 {
        self.rows.min(self.m - i * self.rows)
    }

    /// Y words of one tile (full array height), 0 without Y.
    fn y_words(&self) -> u64 {
        if self.with_y {
            self.rows
        } else {
            0
        }
    }

    fn preload_words(&self) -> u64 {
        self.real_rows(0) + self.y_words()
    }

    /// Port words during tile `t`: the previous tile's Z, this tile's X
    /// chunks after the first, the next tile's first X chunk and Y, and
    /// this tile's W rows.
    fn tile_words(&self, t: u64) -> u64 {
        let (i, _) = self.ij(t);
        let z_prev = if t > 0 { self.rows } else { 0 };
        let x_rest = self.real_rows(i) * (self.chunks - 1);
        let next = if t + 1 < self.tiles {
            self.real_rows(self.ij(t + 1).0) + self.y_words()
        } else {
            0
        };
        z_prev + x_rest + next + self.w_rows
    }

    /// Columns of the last column tile.
    fn last_cols(&self) -> u64 {
        self.k - (self.col_tiles - 1) * self.tile_cols
    }

    fn drain(&self) -> u64 {
        self.pipe + self.last_cols()
    }

    fn beat(&self, base: u64, row: u64, pitch: u64, col: u64) -> Beat {
        Beat {
            addr: base + (row * pitch + col) * FP16_BYTES,
            bytes: self.word_bytes as u32,
        }
    }

    /// X word of row `r` of row tile `i`, reduction chunk `c`.
    fn x_beats(&self, ops: &Operands, i: u64, c: u64, out: &mut Vec<Beat>) {
        for r in 0..self.real_rows(i) {
            out.push(self.beat(ops.x_addr, i * self.rows + r, self.n, c * self.word_elems));
        }
    }

    /// Y or Z words of tile `t`: every row of the array height, even past M
    /// (the streamers move the full height; those words fall beyond the
    /// matrix).
    fn yz_beats(&self, base: u64, t: u64, out: &mut Vec<Beat>) {
        let (i, j) = self.ij(t);
        for r in 0..self.rows {
            out.push(self.beat(base, i * self.rows + r, self.k, j * self.tile_cols));
        }
    }
}

fn cycles(p: &RedMuleParams, m: u64, n: u64, k: u64, with_y: bool) -> JobCycles {
    if m == 0 || n == 0 || k == 0 {
        return JobCycles::default();
    }
    let g = Tiling::new(p, m, n, k, with_y);
    let mut tiles = 0;
    let mut words = g.preload_words() + g.rows;
    for t in 0..g.tiles {
        let w = g.tile_words(t);
        words += w;
        tiles += w.max(g.array);
    }
    let mut c = JobCycles {
        trigger: p.trigger_latency_cycles,
        tiler: p.tiler_cycles,
        preload: g.preload_words(),
        tiles,
        array: g.array * g.tiles,
        drain: g.drain(),
        store: g.rows,
        stream_latency: p.stream_latency_cycles,
        total: 0,
        tile_count: g.tiles,
        port_words: words,
    };
    c.total = c.trigger + c.tiler + c.preload + c.tiles + c.drain + c.store + c.stream_latency;
    c
}

/// The job's activity as phases of TCDM traffic through its single port,
/// one [`Beat`] per port word at the byte address it touches. In order:
/// trigger + tiler (no traffic), preload (first X chunk, first Y), one
/// phase per output tile (`min_cycles` = the array's cycles), the drain, and
/// the last store (`tail_cycles` = the streamer/controller latency).
/// `sum(ideal_cycles)` equals [`job_cycles`] (or [`matmul_cycles`] when
/// `y_addr` is `None`). Within a tile, the array takes a W row every
/// `pipe_regs + 1` cycles and the other words fill the port's idle cycles:
/// the beats are interleaved that way (Z of the previous tile first, then X
/// in the order the chunks are needed, then the next tile's Y).
pub fn job_phases(p: &RedMuleParams, m: u64, n: u64, k: u64, operands: Operands) -> Vec<Phase> {
    if m == 0 || n == 0 || k == 0 {
        return Vec::new();
    }
    let g = Tiling::new(p, m, n, k, operands.y_addr.is_some());
    let mut phases = Vec::with_capacity(g.tiles as usize + 4);
    phases.push(Phase {
        beats: Vec::new(),
        min_cycles: 0,
        tail_cycles: p.trigger_latency_cycles + p.tiler_cycles,
    });

    let mut preload = Vec::new();
    g.x_beats(&operands, 0, 0, &mut preload);
    if let Some(y) = operands.y_addr {
        g.yz_beats(y, 0, &mut preload);
    }
    phases.push(Phase {
        beats: preload,
        min_cycles: 0,
        tail_cycles: 0,
    });

    let per_w = p.pipe_regs as usize;
    for t in 0..g.tiles {
        let (i, j) = g.ij(t);
        let mut others = Vec::new();
        if t > 0 {
            g.yz_beats(operands.z_addr, t - 1, &mut others);
        }
        for c in 1..g.chunks {
            g.x_beats(&operands, i, c, &mut others);
        }
        if t + 1 < g.tiles {
            g.x_beats(&operands, g.ij(t + 1).0, 0, &mut others);
            if let Some(y) = operands.y_addr {
                g.yz_beats(y, t + 1, &mut others);
            }
        }
        let mut beats = Vec::with_capacity(others.len() + g.w_rows as usize);
        let mut rest = others.into_iter();
        for row in 0..g.w_rows {
            // Rows past N (padding to a multiple of `units`) are read too.
            beats.push(g.beat(operands.w_addr, row, g.k, j * g.tile_cols));
            beats.extend(rest.by_ref().take(per_w));
        }
        beats.extend(rest);
        debug_assert_eq!(beats.len() as u64, g.tile_words(t));
        phases.push(Phase {
            beats,
            min_cycles: g.array,
            tail_cycles: 0,
        });
    }

    phases.push(Phase {
        beats: Vec::new(),
        min_cycles: 0,
        tail_cycles: g.drain(),
    });
    let mut store = Vec::new();
    g.yz_beats(operands.z_addr, g.tiles - 1, &mut store);
    phases.push(Phase {
        beats: store,
        min_cycles: 0,
        tail_cycles: p.stream_latency_cycles,
    });
    phases
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> RedMuleParams {
        RedMuleParams::default()
    }

    fn ops(y: bool) -> Operands {
        Operands {
            x_addr: 0,
            w_addr: 0x4000,
            y_addr: y.then_some(0x8000),
            z_addr: 0xC000,
        }
    }

    fn within(model: u64, rtl: u64, pct: f64) -> bool {
        (model as f64 - rtl as f64).abs() / rtl as f64 * 100.0 <= pct
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(p().validate(), Ok(()));
        assert_eq!(p().tile_cols(), 16);
        assert_eq!(p().word_elems(), 16);
        assert_eq!(p().fmas(), 32);
    }

    #[test]
    fn rtl_measurements() {
        // Fixed part for every shape: trigger 5 + tiler 28 = 33; preload
        // 8 X + 8 Y words = 16; store 8 Z words; stream latency 15.
        // Array per tile: 4 * roundup(N, 4); drain 4 + last tile's columns.
        //
        // (8, 128, 8): 1 tile of 4*128 = 512 (port: 128 W + 7*8 X = 184).
        // 33 + 16 + 512 + (4 + 8) + 8 + 15 = 596.
        let a = job_cycles(&p(), 8, 128, 8);
        assert_eq!(a.total, 596);
        assert!(within(a.total, 596, 2.0));
        // (128, 128, 8): 16 tiles x 512 = 8192 (port per tile at most
        // 8 Z + 56 X + 8 X + 8 Y + 128 W = 208).
        // 33 + 16 + 8192 + 12 + 8 + 15 = 8276.
        let b = job_cycles(&p(), 128, 128, 8);
        assert_eq!(b.total, 8276);
        assert!(within(b.total, 8276, 2.0));
        // (64, 64, 64): 8 x 4 = 32 tiles x 4*64 = 256 -> 8192; the last
        // tile is 16 columns wide, so the drain is 4 + 16 = 20.
        // 33 + 16 + 8192 + 20 + 8 + 15 = 8284.
        let c = job_cycles(&p(), 64, 64, 64);
        assert_eq!(c.total, 8284);
        assert!(within(c.total, 8284, 2.0));
        assert_eq!((c.tile_count, c.array, c.port_bound()), (32, 8192, 0));
    }

    #[test]
    fn rough_formula_holds_when_array_bound() {
        // ceil(M/8) * ceil(K/16) * 4 * roundup(N, 4) + a fixed 77..=92.
        for &(m, n, k) in &[(8, 128, 8), (64, 64, 64), (40, 100, 50), (17, 33, 129)] {
            let c = job_cycles(&p(), m, n, k);
            let body = m.div_ceil(8) * k.div_ceil(16) * 4 * n.div_ceil(4) * 4;
            assert_eq!(c.tiles, body, "{m}x{n}x{k}");
            assert!((77..=92).contains(&(c.total - body)), "{m}x{n}x{k}");
        }
    }

    #[test]
    fn small_shapes_by_hand() {
        // (16, 16, 16) with Y: 2 row tiles, 1 column tile, 1 chunk; array
        // 4 * 16 = 64 per tile. Tile 0 port: next X 8 + next Y 8 + W 16 = 32;
        // tile 1: previous Z 8 + W 16 = 24; both under 64 -> 128.
        // 33 + 16 + 128 + (4 + 16) + 8 + 15 = 220 (58 % utilisation).
        let c = job_cycles(&p(), 16, 16, 16);
        assert_eq!((c.preload, c.tiles, c.drain, c.total), (16, 128, 20, 220));

        // (32, 4, 16) with Y, port-bound (LoRA up step at rank 4): 4 tiles,
        // array 4 * 4 = 16 each. Port: tile 0 = X 8 + Y 8 + W 4 = 20;
        // tiles 1, 2 = Z 8 + X 8 + Y 8 + W 4 = 28; tile 3 = Z 8 + W 4 = 12
        // -> 20 + 28 + 28 + 16 = 92.
        // 33 + 16 + 92 + (4 + 16) + 8 + 15 = 184.
        let c = job_cycles(&p(), 32, 4, 16);
        assert_eq!((c.tiles, c.array, c.port_bound()), (92, 64, 28));
        assert_eq!(c.total, 184);

        // (1, 3, 5) without Y: W padded to 4 rows -> array 16; preload is
        // the single X row; the store is still 8 Z words (full height).
        // 33 + 1 + 16 + (4 + 5) + 8 + 15 = 82.
        let c = matmul_cycles(&p(), 1, 3, 5);
        assert_eq!((c.preload, c.tiles, c.drain, c.store), (1, 16, 9, 8));
        assert_eq!(c.total, 82);
        // With Y: preload 1 + 8 = 9 -> 90.
        assert_eq!(job_cycles(&p(), 1, 3, 5).total, 90);

        assert_eq!(job_cycles(&p(), 0, 3, 5), JobCycles::default());
        assert!(job_phases(&p(), 4, 0, 5, ops(true)).is_empty());
    }

    #[test]
    fn phases_sum_to_job_cycles() {
        let dims = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100];
        for &m in &dims {
            for &n in &dims {
                for &k in &dims {
                    for y in [true, false] {
                        let ph = job_phases(&p(), m, n, k, ops(y));
                        let sum: u64 = ph.iter().map(Phase::ideal_cycles).sum();
                        let c = if y {
                            job_cycles(&p(), m, n, k)
                        } else {
                            matmul_cycles(&p(), m, n, k)
                        };
                        assert_eq!(sum, c.total, "{m}x{n}x{k} y={y}");
                        let beats: usize = ph.iter().map(|p| p.beats.len()).sum();
                        assert_eq!(beats as u64, c.port_words, "{m}x{n}x{k} y={y}");
                    }
                }
            }
        }
    }

    #[test]
    fn phases_for_another_build_sum_too() {
        // 12 rows x 4 units x 3 registers (the repository default).
        let q = RedMuleParams {
            rows: 12,
            ..RedMuleParams::default()
        };
        for &(m, n, k) in &[(1, 1, 1), (13, 5, 17), (24, 128, 40), (100, 3, 9)] {
            let sum: u64 = job_phases(&q, m, n, k, ops(true))
                .iter()
                .map(Phase::ideal_cycles)
                .sum();
            assert_eq!(sum, job_cycles(&q, m, n, k).total, "{m}x{n}x{k}");
        }
    }

    #[test]
    fn beats_touch_the_right_words() {
        // (8, 32, 16) with Y: 1 tile, 2 chunks.
        let o = ops(true);
        let ph = job_phases(&p(), 8, 32, 16, o);
        assert_eq!(ph.len(), 5);
        // Preload: X rows 0..8 at pitch 32 * 2 = 64 bytes, then Y rows at
        // pitch 16 * 2 = 32 bytes.
        let pre = &ph[1].beats;
        assert_eq!(
            pre[1],
            Beat {
                addr: 64,
                bytes: 32
            }
        );
        assert_eq!(pre[8].addr, 0x8000);
        assert_eq!(pre[9].addr, 0x8000 + 32);
        // The tile: W row 0, then 3 others (X chunk 1 of rows 0..3, 32
        // bytes in), then W row 1 at 0x4000 + 32.
        let tile = &ph[2];
        assert_eq!(tile.min_cycles, 128);
        assert_eq!(tile.beats[0].addr, 0x4000);
        assert_eq!(tile.beats[1].addr, 32);
        assert_eq!(tile.beats[2].addr, 64 + 32);
        assert_eq!(tile.beats[4].addr, 0x4000 + 32);
        assert_eq!(tile.beats.len(), 32 + 8);
        // The last store: Z rows of the only tile.
        assert_eq!(ph[4].beats[7].addr, 0xC000 + 7 * 32);
        assert_eq!(ph[4].tail_cycles, 15);
    }

    #[test]
    fn utilisation_of_large_and_small_jobs() {
        // 256^3: 32 x 16 = 512 tiles x 4 * 256 = 524288, + 33 + 16 + 20
        // + 8 + 15 = 524380; 16777216 / (524380 * 32) = 0.9998.
        let c = job_cycles(&p(), 256, 256, 256);
        assert_eq!(c.total, 524_380);
        let u = utilisation(&p(), 256, 256, 256, c.total);
        assert!((0.98..=1.0).contains(&u), "{u}");
        // 64^3: 262144 / (8284 * 32) = 0.989 (DATE 2022: 98.8 %).
        let u = utilisation(&p(), 64, 64, 64, job_cycles(&p(), 64, 64, 64).total);
        assert!((0.985..0.995).contains(&u), "{u}");
        assert_eq!(macs(8, 128, 8), 8192);
        assert_eq!(utilisation(&p(), 1, 1, 1, 0), 0.0);
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut RedMuleParams)| {
            let mut q = RedMuleParams::default();
            f(&mut q);
            q.validate().unwrap_err()
        };
        assert!(bad(|q| q.rows = 0).starts_with("rows: must be at least 1"));
        assert!(bad(|q| q.units = 0).starts_with("units"));
        assert!(bad(|q| q.job_contexts = 0).starts_with("job_contexts"));
        // 13 rows > 4 units * 3 registers.
        let e = bad(|q| q.rows = 13);
        assert!(e.starts_with("rows: 13 exceeds units * pipe_regs"), "{e}");
        // 0 registers: no row fits.
        assert!(bad(|q| q.pipe_regs = 0).starts_with("pipe_regs"));
        let e = bad(|q| q.port_bits = 512);
        assert!(e.starts_with("port_bits: 512 must equal"), "{e}");
        // 12 rows x 4 units x 3 registers is the repository's build: valid.
        let q = RedMuleParams {
            rows: 12,
            ..RedMuleParams::default()
        };
        assert_eq!(q.validate(), Ok(()));
    }

    #[test]
    fn deserialises_from_ron() {
        let text = r#"(
            rows: 8,                     // array rows (ARRAY_WIDTH)
            units: 4,                    // FMA units per row (ARRAY_HEIGHT)
            pipe_regs: 3,                // pipeline registers per unit
            port_bits: 256,              // TCDM port data width, bits
            trigger_latency_cycles: 5,   // PMCA cycles
            tiler_cycles: 28,            // PMCA cycles
            stream_latency_cycles: 15,   // PMCA cycles
            config_register_writes: 8,   // writes per job
            job_contexts: 2,
        )"#;
        let q: RedMuleParams = ron::from_str(text).unwrap();
        assert_eq!(q, RedMuleParams::default());
        // Missing fields take the study's defaults.
        let q: RedMuleParams = ron::from_str("(rows: 12)").unwrap();
        assert_eq!((q.rows, q.units), (12, 4));
        // Unknown fields are rejected.
        let e = ron::from_str::<RedMuleParams>("(rows: 8, colums: 4)").unwrap_err();
        assert!(e.to_string().contains("colums"), "{e}");
        // Round trip.
        let s = ron::to_string(&RedMuleParams::default()).unwrap();
        assert_eq!(
            ron::from_str::<RedMuleParams>(&s).unwrap(),
            RedMuleParams::default()
        );
    }
}
