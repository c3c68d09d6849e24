//! The banked TCDM (the PMCA's L1 scratchpad) and the arbitration of its
//! masters, exact to the cycle.
//!
//! # Model
//!
//! - Banks are word-interleaved: the bank of byte address `a` is
//!   `(a / bank_bytes) % banks`. A [`Beat`] needs every bank its byte range
//!   covers, all in the same cycle (a 64-byte DMA beat 8 consecutive banks, a
//!   32-byte RedMule beat 4, an 8-byte core access 1). A master flagged
//!   [`MasterSpec::superbank`] occupies whole superbanks instead, as the
//!   Snitch cluster's wide-port multiplexer does (see below). Addresses are
//!   not checked against the capacity: an address past the end maps to a
//!   bank like any other, so an over-full buffer plan still gets a timing.
//! - Arbitration, each cycle: static priority between classes
//!   ([`PriorityClass`]: DMA wide port, then the external wide port, then the
//!   cores' narrow ports), round-robin per bank among masters of one class.
//!   A beat that loses retries the next cycle.
//! - A master issues the beats of a [`Phase`] in order, presenting up to
//!   `ports` of them per cycle; a beat is granted only if all the earlier
//!   beats of its window were granted in the same cycle, so a lost beat
//!   delays everything behind it. The phase lasts `max(cycles until all its
//!   beats are granted, min_cycles) + tail_cycles`; the next phase starts
//!   when it ends (see `crate::hw::access`).
//!
//! Sources (pulp-platform/snitch_cluster): `snitch_cluster.sv` wires the
//! cores' narrow ports through `snitch_tcdm_interconnect` (round-robin per
//! bank) and, per superbank of `WideDataWidth / NarrowDataWidth` = 8 banks,
//! a `mem_wide_narrow_mux` that also takes the DMA's wide request and the
//! cluster's exposed wide TCDM port (`tcdm_ext_req_i`, where integrations
//! attach HWPEs such as RedMule). That mux arbitrates statically: "the wide
//! port has the highest priority, followed by the external port, and finally
//! the narrow ports", and a granted wide or external request blocks the
//! narrow ports of the whole superbank. A core has
//! `max(NumSsrs, 1)` = 3 TCDM ports (`snitch_cc_pkg::get_tcdm_ports`: SSR 0
//! shares its port with the load/store unit).
//!
//! # Round-robin detail
//!
//! Each bank keeps, per class, a pointer: the id after the last master of
//! that class it granted. Requests of one class are ordered by
//! `(slot in the master's window, cyclic distance of the master id from the
//! pointer of the beat's first bank)`, then granted greedily when all their
//! banks are still free. For one-bank beats this is exactly round-robin per
//! bank; for multi-bank beats it is a deterministic approximation that
//! always grants at least one beat per cycle (no livelock).
//!
//! # Evaluation
//!
//! [`simulate`] steps cycle by cycle (it only jumps over cycles in which no
//! master presents a beat) and is the reference. [`Arbiter`] is the
//! incremental form for the event-driven timing layer: while at most one
//! stream presents beats it advances that stream analytically, whole
//! phases at a time, and it goes cycle by cycle only while two or more
//! streams compete. Even then it arbitrates in full only the cycles that
//! need it: a cycle in which the requesters' beats use disjoint banks
//! grants each what it would get alone, and for two single-port masters of
//! different classes (the DMA and RedMule) the higher class always gets its
//! beat, so their overlap is a tight loop over the two beat sequences. The
//! banks of every beat are computed once per stream ([`PreparedStream`],
//! which the timing layer reuses for jobs that repeat), and the round-robin
//! pointers are written only when a master of the same class takes over.
//! Both give identical results (tested on pseudo-random streams).

use crate::hw::access::{Beat, Phase};
use crate::units::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The most banks the model handles (bank sets are 128-bit masks).
pub const MAX_BANKS: u32 = 128;

/// The TCDM's geometry, from the architecture description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcdmParams {
    /// Capacity, bytes (e.g. `"128KiB"`). Must be `banks` x bank width x a
    /// whole depth (words per bank).
    pub size: Bytes,
    /// Number of banks, count; word-interleaved. A power of two, at most 128.
    pub banks: u32,
    /// Width of one bank word, bits (64 in the Snitch cluster). A power of
    /// two, at least 8.
    pub bank_width_bits: u32,
    /// Banks in one superbank, count: those served together by one access of
    /// the DMA's wide port (DMA width / bank width = 512 / 64 = 8). Used by
    /// masters with [`MasterSpec::superbank`]. A power of two dividing
    /// `banks`.
    pub dma_superbank_banks: u32,
}

impl Default for TcdmParams {
    /// The study's TCDM: 128 KiB in 32 banks of 64 bit (512 words deep),
    /// superbanks of 8 banks.
    fn default() -> Self {
        TcdmParams {
            size: Bytes(128 * 1024),
            banks: 32,
            bank_width_bits: 64,
            dma_superbank_banks: 8,
        }
    }
}

impl TcdmParams {
    /// Checks the geometry; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let w = self.bank_width_bits;
        if w < 8 || !w.is_power_of_two() {
            return Err(format!(
                "bank_width_bits ({w}) must be a power of two of at least 8 bits"
            ));
        }
        let b = self.banks;
        if b == 0 || !b.is_power_of_two() || b > MAX_BANKS {
            return Err(format!(
                "banks ({b}) must be a power of two between 1 and {MAX_BANKS}"
            ));
        }
        let s = self.dma_superbank_banks;
        if s == 0 || !s.is_power_of_two() || s > b {
            return Err(format!(
                "dma_superbank_banks ({s}) must be a power of two dividing banks ({b})"
            ));
        }
        let row = self.bank_bytes() * b as u64;
        if self.size.0 == 0 || self.size.0 % row != 0 {
            return Err(format!(
                "size ({}) must be banks ({b}) x bank width ({} B) x depth: \
                 a non-zero multiple of {row} B",
                self.size,
                self.bank_bytes()
            ));
        }
        Ok(())
    }

    /// Bytes per bank word.
    pub fn bank_bytes(&self) -> u64 {
        self.bank_width_bits as u64 / 8
    }

    /// Words per bank.
    pub fn depth(&self) -> u64 {
        self.size.0 / (self.bank_bytes() * self.banks as u64)
    }

    /// The bank holding byte address `addr`. The parameters must be valid.
    pub fn bank_of(&self, addr: u64) -> u32 {
        ((addr / self.bank_bytes()) % self.banks as u64) as u32
    }

    /// The banks `beat` occupies, ascending. `superbank`: whole superbanks
    /// (see [`MasterSpec::superbank`]). The parameters must be valid.
    pub fn banks_of(&self, beat: &Beat, superbank: bool) -> Vec<u32> {
        let mut m = Geometry::new(self).mask(beat, superbank);
        let mut v = Vec::new();
        while m != 0 {
            v.push(m.trailing_zeros());
            m &= m - 1;
        }
        v
    }
}

/// The priority class of a master's port; lower wins. Static between
/// classes, round-robin per bank within one (snitch_cluster
/// `mem_wide_narrow_mux` and `snitch_tcdm_interconnect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PriorityClass {
    /// The DMA's wide port: "the wide port has the highest priority".
    Wide = 0,
    /// The cluster's exposed wide TCDM port, where an accelerator such as
    /// RedMule is attached: below the DMA, above the cores.
    External = 1,
    /// The cores' narrow ports (load/store unit and SSR streams).
    Narrow = 2,
}

const CLASSES: usize = 3;

/// A TCDM master as the arbiter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterSpec {
    /// Identity for round-robin; unique per physical master. Streams of the
    /// same id compete like distinct masters (ties broken by stream id), so
    /// the caller should run one stream per master at a time.
    pub id: u32,
    pub class: PriorityClass,
    /// Beats the master may have granted per cycle, count (at least 1).
    pub ports: u32,
    /// Whether each beat occupies the whole superbanks it touches (the
    /// wide-port multiplexer blocks all narrow ports of a superbank while it
    /// serves a wide request) rather than just the banks its bytes cover.
    pub superbank: bool,
}

impl MasterSpec {
    /// The cluster DMA: wide port, one 512-bit beat per cycle, superbank
    /// granular.
    pub fn dma() -> Self {
        MasterSpec {
            id: 0,
            class: PriorityClass::Wide,
            ports: 1,
            superbank: true,
        }
    }

    /// RedMule: one 256-bit port on the external wide port's priority,
    /// occupying the 4 banks a 32-byte beat covers. (snitch_cluster
    /// integrations route it through `snitch_tcdm_aligner` into the 512-bit
    /// external port, which occupies the whole superbank: set `superbank` to
    /// model that.)
    pub fn redmule() -> Self {
        MasterSpec {
            id: 1,
            class: PriorityClass::External,
            ports: 1,
            superbank: false,
        }
    }

    /// Compute core `index` (0-based): narrow ports, 3 of them (its SSR
    /// streams, the first shared with the load/store unit).
    pub fn core(index: u32) -> Self {
        MasterSpec {
            id: 2 + index,
            class: PriorityClass::Narrow,
            ports: 3,
            superbank: false,
        }
    }
}

/// A master's activity: its phases, run one after the other from
/// `start_cycle`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub master: MasterSpec,
    pub start_cycle: u64,
    pub phases: Vec<Phase>,
}

/// The outcome of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamResult {
    /// The cycle at which its last phase ends (the next activity of the
    /// master may start in this cycle). `start_cycle` for a stream with no
    /// phases.
    pub finish_cycle: u64,
    /// Cycles lost to other masters: over all phases, the cycles taken to get
    /// the phase's beats granted minus the cycles the master would take
    /// alone. A stall hidden by `min_cycles` is still counted, so this can
    /// exceed the delay of `finish_cycle`.
    pub stall_cycles: u64,
}

/// Identifies a stream within one [`Arbiter`] (allocation order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// Runs the streams together, cycle by cycle, and returns their results in
/// input order. The reference for [`Arbiter`].
///
/// # Panics
/// If `params` is invalid or a master has no port.
pub fn simulate(params: &TcdmParams, streams: &[Stream]) -> Vec<StreamResult> {
    let geo = Geometry::new_checked(params);
    let mut sim = Sim::new(geo);
    for (i, s) in streams.iter().enumerate() {
        let data = Arc::new(PreparedStream::new(&geo, s.master, &s.phases));
        sim.insert(StreamId(i as u64), Cursor::new(data, s.start_cycle));
    }
    sim.now = streams.iter().map(|s| s.start_cycle).min().unwrap_or(0);
    loop {
        let s = sim.scan();
        if s.unretired == 0 {
            break;
        }
        match (s.requesting, s.next_wait) {
            // Nobody presents a beat: nothing can happen before the next
            // phase starts.
            (0, Some(w)) => sim.now = w,
            _ => {
                sim.step();
            }
        }
    }
    sim.streams.iter().map(|(_, c)| c.result()).collect()
}

/// A stream's phases digested for an [`Arbiter`]: the banks of every beat
/// and the cycles of every phase when the master runs alone. It does not
/// depend on when the stream starts, so an activity that repeats (the same
/// job on the same buffers) can be prepared once with
/// [`Arbiter::prepare`] and added any number of times with
/// [`Arbiter::add_prepared`].
#[derive(Debug)]
pub struct PreparedStream {
    /// The geometry the banks were computed for.
    geo: Geometry,
    master: MasterSpec,
    /// The banks of every beat of every phase, in order.
    masks: Vec<u128>,
    /// The bank whose round-robin pointer orders each beat.
    first_banks: Vec<u8>,
    phases: Vec<PhaseInfo>,
    /// `suffix[p]`: cycles phases `p..` take alone.
    suffix: Vec<u64>,
}

impl PreparedStream {
    fn new(geo: &Geometry, master: MasterSpec, phases: &[Phase]) -> Self {
        assert!(master.ports >= 1, "TCDM master {} has no port", master.id);
        let total = phases.iter().map(|ph| ph.beats.len()).sum();
        let mut masks = Vec::with_capacity(total);
        let mut first_banks = Vec::with_capacity(total);
        let mut info = Vec::with_capacity(phases.len());
        for ph in phases {
            let begin = masks.len();
            let mut banks = 0u128;
            for b in &ph.beats {
                let mask = geo.mask(b, master.superbank);
                banks |= mask;
                masks.push(mask);
                first_banks.push(geo.first_bank(b, master.superbank));
            }
            info.push(PhaseInfo {
                begin,
                end: masks.len(),
                min_cycles: ph.min_cycles,
                tail_cycles: ph.tail_cycles,
                solo_grant: solo_grant_from(&master, &masks[begin..], 0),
                banks,
            });
        }
        let mut suffix = vec![0u64; info.len() + 1];
        for (p, ph) in info.iter().enumerate().rev() {
            suffix[p] = suffix[p + 1] + ph.solo_grant.max(ph.min_cycles) + ph.tail_cycles;
        }
        PreparedStream {
            geo: *geo,
            master,
            masks,
            first_banks,
            phases: info,
            suffix,
        }
    }
}

/// The incremental arbiter for the event-driven timing layer.
///
/// Usage: [`Arbiter::add_stream`] (or [`Arbiter::prepare`] once and
/// [`Arbiter::add_prepared`] for each repetition) when a master starts an
/// activity; [`Arbiter::next_finish`] to learn when to schedule the next
/// completion event (ask again after every addition, since a new stream can
/// delay others); [`Arbiter::advance_to`] at that time to collect the
/// finished streams. Time only moves forward.
///
/// While at most one stream presents beats, it is advanced analytically a
/// phase at a time; only cycles in which two or more streams present beats
/// are taken one by one ([`Arbiter::contended_cycles`] counts them; see the
/// module documentation for how cheaply).
#[derive(Debug, Clone)]
pub struct Arbiter {
    sim: Sim,
    next_id: u64,
    /// The answer of `next_finish`, valid until a stream is added or
    /// returned.
    lookahead: Option<Lookahead>,
    /// A discarded look-ahead state, whose buffers the next one reuses.
    spare: Option<Sim>,
}

/// A cached `next_finish`.
#[derive(Debug, Clone)]
struct Lookahead {
    /// The simulation run ahead to where the answer became certain, reused
    /// by the next `advance_to` or `add_stream` that does not stop before
    /// it; `None` when the answer was certain without simulating.
    sim: Option<Sim>,
    result: Option<(u64, StreamId)>,
}

impl Arbiter {
    /// # Panics
    /// If `params` is invalid (check with [`TcdmParams::validate`]).
    pub fn new(params: &TcdmParams) -> Self {
        Arbiter {
            sim: Sim::new(Geometry::new_checked(params)),
            next_id: 0,
            lookahead: None,
            spare: None,
        }
    }

    /// The cycle up to which the arbiter has simulated (every cycle before it
    /// is final).
    pub fn now(&self) -> u64 {
        self.sim.now
    }

    /// Streams added and not yet returned by `advance_to`.
    pub fn stream_count(&self) -> usize {
        self.sim.streams.len()
    }

    /// Cycles simulated in which two or more streams presented beats (the
    /// rest was jumped over a phase at a time), including cycles a
    /// look-ahead of [`Arbiter::next_finish`] simulated and adopted.
    pub fn contended_cycles(&self) -> u64 {
        self.sim.contended_cycles
    }

    /// Digests `phases` of `master` for [`Arbiter::add_prepared`] on this
    /// arbiter (or another of the same TCDM geometry).
    ///
    /// # Panics
    /// If the master has no port.
    pub fn prepare(&self, master: MasterSpec, phases: &[Phase]) -> Arc<PreparedStream> {
        Arc::new(PreparedStream::new(&self.sim.geo, master, phases))
    }

    /// Adds a stream that starts at `stream.start_cycle`. `now_cycle` is the
    /// caller's present: everything before it is simulated first.
    ///
    /// # Panics
    /// If the stream starts before `now_cycle` or before a cycle already
    /// simulated (time went backwards), or its master has no port.
    pub fn add_stream(&mut self, now_cycle: u64, stream: Stream) -> StreamId {
        let prepared = self.prepare(stream.master, &stream.phases);
        self.add_prepared(now_cycle, stream.start_cycle, prepared)
    }

    /// As [`Arbiter::add_stream`], for a stream prepared by
    /// [`Arbiter::prepare`], starting at `start_cycle`.
    ///
    /// # Panics
    /// As [`Arbiter::add_stream`], and if `stream` was prepared for another
    /// TCDM geometry.
    pub fn add_prepared(
        &mut self,
        now_cycle: u64,
        start_cycle: u64,
        stream: Arc<PreparedStream>,
    ) -> StreamId {
        assert!(
            start_cycle >= now_cycle,
            "TCDM stream starts at cycle {start_cycle} before the present cycle {now_cycle}"
        );
        assert!(
            stream.geo == self.sim.geo,
            "TCDM stream prepared for another TCDM geometry"
        );
        self.bring_to(now_cycle);
        self.drop_lookahead();
        assert!(
            start_cycle >= self.sim.now,
            "TCDM stream starts at cycle {start_cycle}, but cycles up to {} are already simulated",
            self.sim.now
        );
        let id = StreamId(self.next_id);
        self.next_id += 1;
        self.sim.insert(id, Cursor::new(stream, start_cycle));
        id
    }

    /// The earliest finish (cycle, stream) among the streams not yet
    /// returned, assuming no stream is added; ties go to the lower id. May
    /// be at or before [`Arbiter::now`] for a stream already finished.
    pub fn next_finish(&mut self) -> Option<(u64, StreamId)> {
        if let Some(l) = &self.lookahead {
            return l.result;
        }
        let l = match self.sim.settled(&self.sim.scan()) {
            Some(result) => Lookahead { sim: None, result },
            None => {
                let mut ahead = match self.spare.take() {
                    Some(mut spare) => {
                        spare.copy_from(&self.sim);
                        spare
                    }
                    None => self.sim.clone(),
                };
                let result = ahead.first_finish();
                Lookahead {
                    sim: Some(ahead),
                    result,
                }
            }
        };
        let r = l.result;
        self.lookahead = Some(l);
        r
    }

    /// Simulates up to `cycle` and returns the streams finished at or before
    /// it, by (finish, id), with their finish cycles. They are forgotten.
    pub fn advance_to(&mut self, cycle: u64) -> Vec<(StreamId, u64)> {
        self.advance_to_results(cycle)
            .into_iter()
            .map(|(id, r)| (id, r.finish_cycle))
            .collect()
    }

    /// As [`Arbiter::advance_to`], with the stall cycles.
    pub fn advance_to_results(&mut self, cycle: u64) -> Vec<(StreamId, StreamResult)> {
        self.bring_to(cycle);
        let mut out: Vec<(StreamId, StreamResult)> = Vec::new();
        let streams = &mut self.sim.streams;
        let mut i = 0;
        while i < streams.len() {
            if streams[i].1.finish.is_some_and(|f| f <= cycle) {
                let (id, c) = streams.remove(i);
                out.push((id, c.result()));
            } else {
                i += 1;
            }
        }
        if !out.is_empty() {
            self.drop_lookahead();
        }
        out.sort_by_key(|(id, r)| (r.finish_cycle, *id));
        out
    }

    /// Simulates every cycle before `cycle`, reusing the look-ahead when it
    /// did not run past `cycle`.
    fn bring_to(&mut self, cycle: u64) {
        if let Some(l) = self.lookahead.take() {
            let keep = match &l.sim {
                // Not reached yet: still valid, nothing was added or removed.
                Some(ahead) => ahead.now > cycle,
                None => cycle <= self.sim.now,
            };
            if keep {
                self.lookahead = Some(l);
            } else if let Some(mut ahead) = l.sim {
                if ahead.now > self.sim.now {
                    std::mem::swap(&mut self.sim, &mut ahead);
                }
                self.spare = Some(ahead);
            }
        }
        if cycle > self.sim.now {
            self.sim.run_until(cycle);
        }
    }

    /// Forgets the look-ahead, keeping its state's buffers.
    fn drop_lookahead(&mut self) {
        if let Some(Lookahead { sim: Some(s), .. }) = self.lookahead.take() {
            self.spare = Some(s);
        }
    }
}

// ---------------------------------------------------------------------------
// Internals.

fn low_mask(n: u64) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// Derived geometry, all in bytes and counts (powers of two: divisions are
/// shifts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    /// log2 of the bytes of a bank word.
    bank_shift: u32,
    banks: u64,
    sb_banks: u64,
    /// log2 of the bytes of a superbank row.
    sb_shift: u32,
    superbanks: u64,
}

impl Geometry {
    fn new(p: &TcdmParams) -> Self {
        let bank_bytes = p.bank_bytes();
        let sb_banks = p.dma_superbank_banks as u64;
        Geometry {
            bank_shift: bank_bytes.trailing_zeros(),
            banks: p.banks as u64,
            sb_banks,
            sb_shift: (bank_bytes * sb_banks).trailing_zeros(),
            superbanks: p.banks as u64 / sb_banks,
        }
    }

    fn new_checked(p: &TcdmParams) -> Self {
        if let Err(e) = p.validate() {
            panic!("invalid TCDM parameters: {e}");
        }
        Geometry::new(p)
    }

    /// The banks `beat` occupies. A zero-byte beat counts as one byte.
    fn mask(&self, beat: &Beat, superbank: bool) -> u128 {
        let first = beat.addr;
        let last = first + (beat.bytes.max(1) as u64) - 1;
        let (shift, count, width) = if superbank {
            (self.sb_shift, self.superbanks, self.sb_banks)
        } else {
            (self.bank_shift, self.banks, 1)
        };
        let (u0, u1) = (first >> shift, last >> shift);
        let n = u1 - u0 + 1;
        if n >= count {
            return low_mask(self.banks);
        }
        // `n` units from unit `u0 % count`, wrapping around the `banks` bits
        // (`count * width == banks`, so `pos < banks <= 128`).
        let run = low_mask(n * width);
        let pos = (u0 & (count - 1)) * width;
        let wrapped = if pos == 0 {
            0
        } else {
            run >> (self.banks - pos)
        };
        ((run << pos) & low_mask(self.banks)) | wrapped
    }

    /// The bank whose round-robin pointer orders `beat` within its class.
    fn first_bank(&self, beat: &Beat, superbank: bool) -> u8 {
        // Below `banks <= 128`.
        if superbank {
            (((beat.addr >> self.sb_shift) & (self.superbanks - 1)) * self.sb_banks) as u8
        } else {
            ((beat.addr >> self.bank_shift) & (self.banks - 1)) as u8
        }
    }
}

/// Marks `id` as the last master of class `class` (index) granted on every
/// bank of `mask`.
fn apply_rr(rr: &mut [u32], banks: u64, class: usize, id: u32, mut mask: u128) {
    let rr = &mut rr[class * banks as usize..][..banks as usize];
    // A run of consecutive banks at a time.
    while mask != 0 {
        let lo = mask.trailing_zeros();
        let len = (mask >> lo).trailing_ones();
        rr[lo as usize..(lo + len) as usize].fill(id.wrapping_add(1));
        mask &= !(low_mask(len as u64) << lo);
    }
}

/// The round-robin pointers: per class and bank, the id after the last
/// master of the class granted on the bank. Grants are recorded lazily: per
/// class, the banks granted to the latest master since the pointers were
/// last written (grants of one master in a row set the same value, so only
/// a change of master needs the earlier ones written).
#[derive(Debug, Clone)]
struct RoundRobin {
    banks: u64,
    /// `[class * banks + bank]`, up to date but for `pending`.
    ptr: Vec<u32>,
    /// Per class: (master id, banks granted to it not yet written).
    pending: [(u32, u128); CLASSES],
}

impl RoundRobin {
    fn new(banks: u64) -> Self {
        RoundRobin {
            banks,
            ptr: vec![0; CLASSES * banks as usize],
            pending: [(0, 0); CLASSES],
        }
    }

    /// Master `id` of `class` was granted every bank of `mask`.
    fn grant(&mut self, class: PriorityClass, id: u32, mask: u128) {
        let c = class as usize;
        let p = &mut self.pending[c];
        if p.0 != id {
            if p.1 != 0 {
                apply_rr(&mut self.ptr, self.banks, c, p.0, p.1);
            }
            *p = (id, 0);
        }
        p.1 |= mask;
    }

    /// Writes the pending grants.
    fn flush(&mut self) {
        for (c, p) in self.pending.iter_mut().enumerate() {
            if p.1 != 0 {
                apply_rr(&mut self.ptr, self.banks, c, p.0, p.1);
                p.1 = 0;
            }
        }
    }

    /// The pointer of `class` on `bank`; `flush` first.
    fn get(&self, class: PriorityClass, bank: u8) -> u32 {
        debug_assert!(self.pending.iter().all(|p| p.1 == 0));
        self.ptr[class as usize * self.banks as usize + bank as usize]
    }
}

/// One cycle of a master alone, from beat `from`: how many beats it gets
/// granted (in order, up to its ports, until one needs a bank an earlier
/// one of the same cycle took) and the banks they use.
fn solo_cycle(m: &MasterSpec, beats: &[u128], from: usize) -> (usize, u128) {
    let mut taken = 0u128;
    let mut g = 0;
    while g < m.ports as usize && from + g < beats.len() {
        let mask = beats[from + g];
        if taken & mask != 0 {
            break;
        }
        taken |= mask;
        g += 1;
    }
    (g, taken)
}

/// Cycles a master alone needs to get beats `from..` granted.
fn solo_grant_from(m: &MasterSpec, beats: &[u128], from: usize) -> u64 {
    if m.ports == 1 {
        // One beat per cycle and nobody to conflict with.
        return (beats.len() - from) as u64;
    }
    let (mut k, mut cycles) = (from, 0);
    while k < beats.len() {
        k += solo_cycle(m, beats, k).0;
        cycles += 1;
    }
    cycles
}

#[derive(Debug, Clone, Copy)]
struct PhaseInfo {
    /// Its beats: `PreparedStream::masks[begin..end]`.
    begin: usize,
    end: usize,
    min_cycles: u64,
    tail_cycles: u64,
    /// Cycles to get all beats granted with no other master.
    solo_grant: u64,
    /// Every bank the phase's beats touch.
    banks: u128,
}

impl PhaseInfo {
    fn has_beats(&self) -> bool {
        self.end > self.begin
    }
}

/// Where a stream is. Unless retired (`finish` known), the current phase
/// has beats left to grant; it presents them from `phase_start` on.
#[derive(Debug, Clone)]
struct Cursor {
    data: Arc<PreparedStream>,
    phase: usize,
    phase_start: u64,
    /// Beats of the current phase granted so far.
    granted: usize,
    stall: u64,
    finish: Option<u64>,
}

impl Cursor {
    fn new(data: Arc<PreparedStream>, start: u64) -> Self {
        let mut c = Cursor {
            data,
            phase: 0,
            phase_start: start,
            granted: 0,
            stall: 0,
            finish: None,
        };
        match c.data.phases.first() {
            None => c.finish = Some(start),
            Some(ph) if !ph.has_beats() => c.complete_beats(start),
            Some(_) => {}
        }
        c
    }

    /// The banks of the current phase's beats.
    fn beats(&self) -> &[u128] {
        let ph = &self.data.phases[self.phase];
        &self.data.masks[ph.begin..ph.end]
    }

    /// The round-robin banks of the current phase's beats.
    fn first_banks(&self) -> &[u8] {
        let ph = &self.data.phases[self.phase];
        &self.data.first_banks[ph.begin..ph.end]
    }

    fn requesting(&self, t: u64) -> bool {
        self.finish.is_none() && self.phase_start <= t
    }

    /// The current phase's beats are all granted, the last in the cycle
    /// before `grant_end`: close the phase and enter the next one (closing
    /// beat-less phases on the way).
    fn complete_beats(&mut self, grant_end: u64) {
        let data = &self.data;
        let mut grant_end = grant_end;
        loop {
            let ph = &data.phases[self.phase];
            let grant = grant_end - self.phase_start;
            debug_assert!(grant >= ph.solo_grant, "a phase went faster than alone");
            self.stall += grant.saturating_sub(ph.solo_grant);
            let end = self.phase_start + grant.max(ph.min_cycles) + ph.tail_cycles;
            self.phase += 1;
            self.granted = 0;
            if self.phase == data.phases.len() {
                self.finish = Some(end);
                return;
            }
            self.phase_start = end;
            if data.phases[self.phase].has_beats() {
                return;
            }
            grant_end = end;
        }
    }

    /// The finish if no other stream presents a beat from `now` on.
    fn solo_finish(&self, now: u64) -> u64 {
        if let Some(f) = self.finish {
            return f;
        }
        let d = &self.data;
        let p = self.phase;
        let ph = &d.phases[p];
        let rest = if self.granted == 0 {
            ph.solo_grant
        } else {
            solo_grant_from(&d.master, self.beats(), self.granted)
        };
        let grant_end = now.max(self.phase_start) + rest;
        let end =
            self.phase_start + (grant_end - self.phase_start).max(ph.min_cycles) + ph.tail_cycles;
        end + d.suffix[p + 1]
    }

    fn result(&self) -> StreamResult {
        StreamResult {
            finish_cycle: self.finish.expect("stream not finished"),
            stall_cycles: self.stall,
        }
    }
}

/// Advances `c`, the only stream presenting beats during cycles
/// `from..to`, to cycle `to` (or to its retirement): whole phases at once
/// where they fit, beat by beat otherwise.
fn solo_advance(rr: &mut RoundRobin, c: &mut Cursor, from: u64, to: u64) {
    let data = Arc::clone(&c.data);
    let m = data.master;
    let mut t = from;
    while c.finish.is_none() {
        t = t.max(c.phase_start);
        if t >= to {
            break;
        }
        let info = data.phases[c.phase];
        let beats = &data.masks[info.begin..info.end];
        if c.granted == 0 && t + info.solo_grant <= to {
            // Alone, the master wins every bank it asks for: the pointers
            // end on it for each bank the phase touches.
            rr.grant(m.class, m.id, info.banks);
            c.granted = beats.len();
            t += info.solo_grant;
            c.complete_beats(t);
            continue;
        }
        if m.ports == 1 {
            // One beat a cycle: the pointers end on the master for every
            // bank of the beats granted.
            let n = (to - t).min((beats.len() - c.granted) as u64) as usize;
            let mask = beats[c.granted..c.granted + n]
                .iter()
                .fold(0u128, |acc, b| acc | b);
            rr.grant(m.class, m.id, mask);
            c.granted += n;
            t += n as u64;
        } else {
            while t < to && c.granted < beats.len() {
                let (g, mask) = solo_cycle(&m, beats, c.granted);
                rr.grant(m.class, m.id, mask);
                c.granted += g;
                t += 1;
            }
        }
        if c.granted < beats.len() {
            break;
        }
        c.complete_beats(t);
    }
}

/// A request of one cycle's arbitration.
#[derive(Debug, Clone, Copy)]
struct Req {
    class: PriorityClass,
    /// Position in the master's window this cycle.
    slot: u32,
    /// Cyclic distance of the master id from the round-robin pointer.
    rank: u32,
    id: u32,
    sid: StreamId,
    /// Index into the cycle's list of requesting streams.
    idx: usize,
    mask: u128,
}

/// A summary of the streams at the current cycle.
#[derive(Debug, Default)]
struct Scan {
    unretired: usize,
    /// Unretired streams presenting beats now.
    requesting: usize,
    /// The position of one of them (the only one when `requesting == 1`).
    requester: Option<usize>,
    /// The position of the lone unretired stream when `unretired == 1`.
    lone: Option<usize>,
    /// The earliest phase start of the unretired streams not presenting.
    next_wait: Option<u64>,
    /// The earliest known finish (cycle, id) among retired streams.
    first_retired: Option<(u64, StreamId)>,
}

/// The dynamic state: exact at the start of cycle `now`.
#[derive(Debug, Clone)]
struct Sim {
    geo: Geometry,
    now: u64,
    rr: RoundRobin,
    /// The streams by ascending id.
    streams: Vec<(StreamId, Cursor)>,
    contended_cycles: u64,
    // Scratch buffers of `step`, empty between calls.
    reqs: Vec<Req>,
    who: Vec<(usize, u32)>,
    /// Scratch buffer of `contended_to`: (position, beats, banks).
    grants: Vec<(usize, usize, u128)>,
}

impl Sim {
    fn new(geo: Geometry) -> Self {
        Sim {
            geo,
            now: 0,
            rr: RoundRobin::new(geo.banks),
            streams: Vec::new(),
            contended_cycles: 0,
            reqs: Vec::new(),
            who: Vec::new(),
            grants: Vec::new(),
        }
    }

    /// Makes this state a copy of `o`, reusing the buffers.
    fn copy_from(&mut self, o: &Sim) {
        self.geo = o.geo;
        self.now = o.now;
        self.rr.banks = o.rr.banks;
        self.rr.ptr.clone_from(&o.rr.ptr);
        self.rr.pending = o.rr.pending;
        self.streams.clone_from(&o.streams);
        self.contended_cycles = o.contended_cycles;
    }

    /// Adds a stream; ids must come in ascending order.
    fn insert(&mut self, id: StreamId, c: Cursor) {
        debug_assert!(self.streams.last().is_none_or(|(last, _)| *last < id));
        self.streams.push((id, c));
    }

    fn scan(&self) -> Scan {
        let mut s = Scan::default();
        for (i, (id, c)) in self.streams.iter().enumerate() {
            match c.finish {
                Some(f) => {
                    if s.first_retired.is_none_or(|r| (f, *id) < r) {
                        s.first_retired = Some((f, *id));
                    }
                }
                None => {
                    s.unretired += 1;
                    s.lone = Some(i);
                    if c.phase_start <= self.now {
                        s.requesting += 1;
                        s.requester = Some(i);
                    } else if s.next_wait.is_none_or(|w| c.phase_start < w) {
                        s.next_wait = Some(c.phase_start);
                    }
                }
            }
        }
        if s.unretired != 1 {
            s.lone = None;
        }
        s
    }

    /// Arbitrates cycle `now` among all streams presenting beats. Returns
    /// whether one of them got the last beat of its phase granted.
    fn step(&mut self) -> bool {
        let t = self.now;
        self.rr.flush();
        let mut reqs = std::mem::take(&mut self.reqs);
        let mut who = std::mem::take(&mut self.who);
        for (i, (sid, c)) in self.streams.iter().enumerate() {
            if !c.requesting(t) {
                continue;
            }
            let m = c.data.master;
            let beats = &c.beats()[c.granted..];
            let firsts = &c.first_banks()[c.granted..];
            let window = (m.ports as usize).min(beats.len());
            let idx = who.len();
            who.push((i, 0));
            for (j, (&mask, &first)) in beats.iter().zip(firsts).take(window).enumerate() {
                let ptr = self.rr.get(m.class, first);
                reqs.push(Req {
                    class: m.class,
                    slot: j as u32,
                    rank: m.id.wrapping_sub(ptr),
                    id: m.id,
                    sid: *sid,
                    idx,
                    mask,
                });
            }
        }
        if who.len() >= 2 {
            self.contended_cycles += 1;
        }
        // (class, slot, rank, id, sid) is unique per request.
        reqs.sort_unstable_by_key(|r| (r.class, r.slot, r.rank, r.id, r.sid));
        let mut taken = 0u128;
        for r in &reqs {
            let granted = &mut who[r.idx].1;
            // In order: a beat goes only if the earlier ones of its window did.
            if *granted != r.slot || taken & r.mask != 0 {
                continue;
            }
            taken |= r.mask;
            *granted += 1;
            self.rr.grant(r.class, r.id, r.mask);
        }
        let mut completed = false;
        for &(i, g) in &who {
            let c = &mut self.streams[i].1;
            c.granted += g as usize;
            if c.granted == c.beats().len() {
                c.complete_beats(t + 1);
                completed = true;
            }
        }
        reqs.clear();
        who.clear();
        self.reqs = reqs;
        self.who = who;
        self.now = t + 1;
        completed
    }

    /// Simulates cycles from `now` while two or more streams present beats:
    /// up to `limit` (after at least one cycle) or until one of them gets
    /// the last beat of its phase granted. The caller guarantees that no
    /// other stream starts presenting before `limit`.
    fn contended_to(&mut self, limit: u64) {
        loop {
            let completed = match self.single_port_pair() {
                Some((p, q)) => self.pair_cycles(p, q, limit),
                None => self.contended_cycle(),
            };
            if completed || self.now >= limit {
                break;
            }
        }
    }

    /// The positions of the requesters when exactly two streams present
    /// beats and both masters have a single port.
    fn single_port_pair(&self) -> Option<(usize, usize)> {
        let t = self.now;
        let mut found = [0usize; 2];
        let mut k = 0;
        for (i, (_, c)) in self.streams.iter().enumerate() {
            if c.requesting(t) {
                if k == 2 || c.data.master.ports != 1 {
                    return None;
                }
                found[k] = i;
                k += 1;
            }
        }
        (k == 2).then_some((found[0], found[1]))
    }

    /// Cycles from `now`, up to `limit`, with the single-port masters at
    /// positions `p` and `q` the only requesters. Stops at `limit`, when a
    /// phase's beats are all granted (returns whether one was), or, for
    /// masters of one class, after the first cycle with a conflict.
    fn pair_cycles(&mut self, p: usize, q: usize, limit: u64) -> bool {
        let t0 = self.now;
        let (a, b) = (&self.streams[p].1, &self.streams[q].1);
        let (ma, mb) = (a.data.master, b.data.master);
        let (ba, bb) = (&a.beats()[a.granted..], &b.beats()[b.granted..]);
        let union = |beats: &[u128]| beats.iter().fold(0u128, |acc, x| acc | x);
        let (run_a, run_b, cycles) = if ma.class != mb.class {
            // The higher class is served first and, with one port, is never
            // refused: it gets a beat every cycle, as alone. The other gets
            // its beat whenever it needs none of the same banks. The
            // pointers are per class, so each ends on its master for the
            // banks it was granted, whatever the order.
            let hi_a = ma.class < mb.class;
            let (hi, lo) = if hi_a { (ba, bb) } else { (bb, ba) };
            let hi = &hi[..(limit - t0).min(hi.len() as u64) as usize];
            let (mut i, mut g) = (0, 0);
            while i < hi.len() && g < lo.len() {
                // Both advance until the first conflict, a cycle in which
                // only the higher class does.
                let k = (hi.len() - i).min(lo.len() - g);
                let run = lo[g..g + k]
                    .iter()
                    .zip(&hi[i..i + k])
                    .position(|(x, y)| x & y != 0)
                    .unwrap_or(k);
                g += run;
                i += run;
                if run < k {
                    i += 1;
                }
            }
            let (m_hi, m_lo) = if hi_a { (ma, mb) } else { (mb, ma) };
            self.rr.grant(m_hi.class, m_hi.id, union(&hi[..i]));
            self.rr.grant(m_lo.class, m_lo.id, union(&lo[..g]));
            if hi_a {
                (i, g, i)
            } else {
                (g, i, i)
            }
        } else {
            // One class: while the beats use disjoint banks both are
            // granted a beat each cycle (as alone, and as `step` would
            // find); the first cycle with a conflict goes through `step`.
            let n = (limit - t0).min(ba.len().min(bb.len()) as u64) as usize;
            let run = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x & y != 0)
                .unwrap_or(n);
            if run == 0 {
                return self.step();
            }
            let (ua, ub) = (union(&ba[..run]), union(&bb[..run]));
            if ua & ub == 0 {
                // Each pointer a master moves ends on it, whatever the order.
                self.rr.grant(ma.class, ma.id, ua);
                self.rr.grant(mb.class, mb.id, ub);
            } else {
                // Both move pointers of some bank: in cycle order.
                for (x, y) in ba[..run].iter().zip(&bb[..run]) {
                    self.rr.grant(ma.class, ma.id, *x);
                    self.rr.grant(mb.class, mb.id, *y);
                }
            }
            (run, run, run)
        };
        self.contended_cycles += cycles as u64;
        self.now = t0 + cycles as u64;
        let mut completed = false;
        for (i, g) in [(p, run_a), (q, run_b)] {
            let c = &mut self.streams[i].1;
            c.granted += g;
            if c.granted == c.beats().len() {
                c.complete_beats(self.now);
                completed = true;
            }
        }
        completed
    }

    /// One cycle of two or more streams presenting beats. When the beats
    /// each requester would get alone use disjoint banks it needs no
    /// arbitration: every requester gets exactly those (whatever the order,
    /// none of them is blocked, and a beat past its master's own grant is
    /// blocked by the master's own earlier beat or its window), as `step`
    /// would find; otherwise `step` arbitrates. Returns whether a phase's
    /// beats were all granted.
    fn contended_cycle(&mut self) -> bool {
        let t = self.now;
        let mut grants = std::mem::take(&mut self.grants);
        let mut taken = 0u128;
        let mut disjoint = true;
        for (i, (_, c)) in self.streams.iter().enumerate() {
            if !c.requesting(t) {
                continue;
            }
            let (g, mask) = solo_cycle(&c.data.master, c.beats(), c.granted);
            if taken & mask != 0 {
                disjoint = false;
                break;
            }
            taken |= mask;
            grants.push((i, g, mask));
        }
        let completed = if disjoint {
            debug_assert!(grants.len() >= 2);
            self.contended_cycles += 1;
            let mut completed = false;
            for &(i, g, mask) in &grants {
                let c = &mut self.streams[i].1;
                let m = c.data.master;
                self.rr.grant(m.class, m.id, mask);
                c.granted += g;
                if c.granted == c.beats().len() {
                    c.complete_beats(t + 1);
                    completed = true;
                }
            }
            self.now = t + 1;
            completed
        } else {
            self.step()
        };
        grants.clear();
        self.grants = grants;
        completed
    }

    /// Advances the lone requester at position `i` from `now` to `to` and
    /// sets `now`.
    fn solo_to(&mut self, i: usize, to: u64) {
        let from = self.now;
        solo_advance(&mut self.rr, &mut self.streams[i].1, from, to);
        self.now = to;
    }

    /// Simulates every cycle before `t`.
    fn run_until(&mut self, t: u64) {
        while self.now < t {
            let s = self.scan();
            if s.unretired == 0 {
                self.now = t;
                break;
            }
            match (s.requesting, s.requester) {
                (0, _) => self.now = t.min(s.next_wait.unwrap_or(t)),
                (1, Some(i)) => self.solo_to(i, t.min(s.next_wait.unwrap_or(t))),
                _ => self.contended_to(t.min(s.next_wait.unwrap_or(t))),
            }
        }
    }

    /// The earliest finish if it is certain without simulating past `now`
    /// (`s` is the present scan): every stream retired, one left alone, or
    /// a retired one finishing by `now`.
    fn settled(&self, s: &Scan) -> Option<Option<(u64, StreamId)>> {
        let first = s.first_retired;
        if s.unretired == 0 {
            return Some(first);
        }
        if let Some(i) = s.lone {
            let (id, c) = &self.streams[i];
            let f = (c.solo_finish(self.now), *id);
            return Some(Some(first.map_or(f, |r| r.min(f))));
        }
        // An unretired stream still has a beat to grant at or after `now`,
        // so it ends after `now`.
        match first {
            Some((f, _)) if f <= self.now => Some(first),
            _ => None,
        }
    }

    /// Runs forward until the earliest finish is certain and returns it.
    fn first_finish(&mut self) -> Option<(u64, StreamId)> {
        loop {
            let s = self.scan();
            if let Some(r) = self.settled(&s) {
                return r;
            }
            let horizon = s.first_retired.map_or(u64::MAX, |(f, _)| f);
            match (s.requesting, s.requester) {
                (0, _) => self.now = horizon.min(s.next_wait.unwrap_or(horizon)),
                (1, Some(i)) => self.solo_to(i, horizon.min(s.next_wait.unwrap_or(horizon))),
                _ => self.contended_to(horizon.min(s.next_wait.unwrap_or(horizon))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn beat(addr: u64, bytes: u32) -> Beat {
        Beat { addr, bytes }
    }

    fn phase(beats: Vec<Beat>, min_cycles: u64, tail_cycles: u64) -> Phase {
        Phase {
            beats,
            min_cycles,
            tail_cycles,
        }
    }

    fn stream(master: MasterSpec, start_cycle: u64, phases: Vec<Phase>) -> Stream {
        Stream {
            master,
            start_cycle,
            phases,
        }
    }

    fn single_port_core(i: u32) -> MasterSpec {
        MasterSpec {
            ports: 1,
            ..MasterSpec::core(i)
        }
    }

    fn res(finish_cycle: u64, stall_cycles: u64) -> StreamResult {
        StreamResult {
            finish_cycle,
            stall_cycles,
        }
    }

    #[test]
    fn default_is_the_study_tcdm_and_valid() {
        let p = TcdmParams::default();
        p.validate().unwrap();
        assert_eq!(p.size, Bytes(131_072));
        assert_eq!(p.bank_bytes(), 8);
        assert_eq!(p.depth(), 512); // 128 KiB / (32 x 8 B)
    }

    #[test]
    fn parses_from_ron_and_rejects_unknown_fields() {
        let p: TcdmParams =
            ron::from_str(r#"(size: "64KiB", banks: 16, bank_width_bits: 64)"#).unwrap();
        assert_eq!(p.size, Bytes(65_536));
        assert_eq!(p.dma_superbank_banks, 8); // default
        p.validate().unwrap();
        assert!(ron::from_str::<TcdmParams>(r#"(bankz: 3)"#).is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let bad = |f: fn(&mut TcdmParams)| {
            let mut p = TcdmParams::default();
            f(&mut p);
            p.validate().unwrap_err()
        };
        // 100 000 B is not a whole number of 256 B rows (32 banks x 8 B).
        assert!(bad(|p| p.size = Bytes(100_000)).starts_with("size"));
        assert!(bad(|p| p.size = Bytes(0)).starts_with("size"));
        assert!(bad(|p| p.banks = 24).starts_with("banks"));
        assert!(bad(|p| p.banks = 256).starts_with("banks"));
        assert!(bad(|p| p.bank_width_bits = 48).starts_with("bank_width_bits"));
        assert!(bad(|p| p.dma_superbank_banks = 64).starts_with("dma_superbank_banks"));
        assert!(bad(|p| p.dma_superbank_banks = 3).starts_with("dma_superbank_banks"));
    }

    #[test]
    fn word_interleaved_bank_mapping() {
        let p = TcdmParams::default();
        // bank = (addr / 8) % 32
        assert_eq!(p.bank_of(0), 0);
        assert_eq!(p.bank_of(8), 1);
        assert_eq!(p.bank_of(255), 31);
        assert_eq!(p.bank_of(256), 0);
        // A 64-byte DMA beat at 128: words 16..=23 -> banks 16..=23.
        assert_eq!(
            p.banks_of(&beat(128, 64), false),
            (16..24).collect::<Vec<_>>()
        );
        // A 32-byte RedMule beat at 248: words 31, 32, 33, 34 -> banks 31, 0, 1, 2.
        assert_eq!(p.banks_of(&beat(248, 32), false), vec![0, 1, 2, 31]);
        // An 8-byte core access: one bank; a misaligned one straddles two.
        assert_eq!(p.banks_of(&beat(16, 8), false), vec![2]);
        assert_eq!(p.banks_of(&beat(20, 8), false), vec![2, 3]);
        // Superbank granular: a 16-byte beat at 72 (superbank 1) takes banks 8..=15.
        assert_eq!(p.banks_of(&beat(72, 16), true), (8..16).collect::<Vec<_>>());
        // A beat wider than the whole TCDM row takes every bank once.
        assert_eq!(p.banks_of(&beat(0, 512), false).len(), 32);
    }

    #[test]
    fn dma_beats_redmule_on_a_shared_bank_and_shifts_its_later_beats() {
        let p = TcdmParams::default();
        // DMA: beats on superbanks 0 (banks 0-7) and 1 (banks 8-15), cycles 0 and 1.
        let dma = stream(
            MasterSpec::dma(),
            0,
            vec![phase(vec![beat(0, 64), beat(64, 64)], 0, 0)],
        );
        // RedMule alone: b0 (banks 0-3) at cycle 0, b1 (banks 8-11) at 1,
        // b2 (banks 16-19) at 2 -> finish 3.
        let rm_phases = vec![phase(vec![beat(0, 32), beat(64, 32), beat(128, 32)], 0, 0)];
        let rm = stream(MasterSpec::redmule(), 0, rm_phases.clone());
        assert_eq!(simulate(&p, std::slice::from_ref(&rm)), vec![res(3, 0)]);
        // Together, cycle 0: DMA (Wide) and b0 (External) both want banks 0-3:
        // the DMA wins. Cycle 1: b0 retries and gets banks 0-3 while the DMA
        // takes 8-15. Cycle 2: b1 (banks 8-11, free again). Cycle 3: b2.
        // RedMule finishes at 4: exactly one cycle late, every beat shifted.
        let r = simulate(&p, &[dma.clone(), rm.clone()]);
        assert_eq!(r, vec![res(2, 0), res(4, 1)]);
        // Same answer from the incremental arbiter.
        let mut a = Arbiter::new(&p);
        let d = a.add_stream(0, dma);
        let m = a.add_stream(0, rm);
        assert_eq!(a.next_finish(), Some((2, d)));
        assert_eq!(a.advance_to(2), vec![(d, 2)]);
        assert_eq!(a.next_finish(), Some((4, m)));
        let got = a.advance_to_results(10);
        assert_eq!(got, vec![(m, res(4, 1))]);
        assert_eq!(a.stream_count(), 0);
    }

    #[test]
    fn equal_priority_masters_alternate_round_robin_on_one_bank() {
        let p = TcdmParams::default();
        // Two single-port cores (ids 2 and 3), three 8-byte beats each, all in
        // bank 0 (addresses 0, 256, 512).
        let beats = vec![beat(0, 8), beat(256, 8), beat(512, 8)];
        let s0 = stream(single_port_core(0), 0, vec![phase(beats.clone(), 0, 0)]);
        let s1 = stream(single_port_core(1), 0, vec![phase(beats, 0, 0)]);
        // Pointer of bank 0 starts at 0: distances 2 and 3, core 0 wins cycle 0
        // (pointer -> 3); core 1 (distance 0) wins cycle 1 (pointer -> 4);
        // core 0 (distance 2-4 = 2^32-2) beats core 1 (2^32-1) at cycle 2; and
        // so on: core 0 granted at 0, 2, 4 -> finish 5, stalled 5 - 3 = 2;
        // core 1 at 1, 3, 5 -> finish 6, stalled 6 - 3 = 3.
        assert_eq!(simulate(&p, &[s0, s1]), vec![res(5, 2), res(6, 3)]);
    }

    #[test]
    fn disjoint_banks_do_not_stall() {
        let p = TcdmParams::default();
        // DMA on superbank 0 (banks 0-7), a core on banks 8..=15, RedMule on
        // 16..=19: nobody shares a bank.
        let dma = stream(
            MasterSpec::dma(),
            0,
            vec![phase(vec![beat(0, 64); 10], 0, 2)],
        );
        let core = stream(
            MasterSpec::core(0),
            1,
            vec![phase((0..8).map(|i| beat(64 + 8 * i, 8)).collect(), 0, 0)],
        );
        let rm = stream(
            MasterSpec::redmule(),
            0,
            vec![phase(vec![beat(128, 32); 6], 7, 0)],
        );
        // Alone: DMA 10 + 2 = 12; core: 8 beats on distinct banks with 3
        // ports -> 3 cycles, from 1 -> 4; RedMule max(6, 7) = 7.
        assert_eq!(
            simulate(&p, &[dma, core, rm]),
            vec![res(12, 0), res(4, 0), res(7, 0)]
        );
    }

    #[test]
    fn min_cycles_hides_a_stall() {
        let p = TcdmParams::default();
        let dma = stream(MasterSpec::dma(), 0, vec![phase(vec![beat(0, 64)], 0, 0)]);
        // RedMule: 2 beats on bank 0-3 and 4-7, computing for 5 cycles meanwhile.
        let rm = stream(
            MasterSpec::redmule(),
            0,
            vec![phase(vec![beat(0, 32), beat(32, 32)], 5, 1)],
        );
        // Alone: max(2, 5) + 1 = 6. With the DMA on banks 0-7 at cycle 0, the
        // beats go at 1 and 2 (grant takes 3 cycles, 1 lost), still under the
        // 5 compute cycles: max(3, 5) + 1 = 6, no delay; the stall is counted.
        assert_eq!(simulate(&p, &[dma, rm]), vec![res(1, 0), res(6, 1)]);
    }

    #[test]
    fn lone_stream_finishes_after_its_ideal_cycles() {
        let p = TcdmParams::default();
        let phases = vec![
            phase(vec![beat(0, 32); 4], 0, 3),   // 4 + 3 = 7
            phase(vec![], 5, 2),                 // 5 + 2 = 7
            phase(vec![beat(64, 32); 3], 10, 0), // max(3, 10) = 10
            phase(vec![beat(8, 8)], 0, 0),       // 1
        ];
        let ideal: u64 = phases.iter().map(Phase::ideal_cycles).sum();
        assert_eq!(ideal, 25);
        let s = stream(MasterSpec::redmule(), 100, phases);
        assert_eq!(simulate(&p, std::slice::from_ref(&s)), vec![res(125, 0)]);
        let mut a = Arbiter::new(&p);
        let id = a.add_stream(40, s);
        assert_eq!(a.next_finish(), Some((125, id)));
        assert_eq!(a.advance_to(124), vec![]);
        assert_eq!(a.advance_to(125), vec![(id, 125)]);
        assert_eq!(a.contended_cycles(), 0);
    }

    #[test]
    fn multi_port_master_conflicts_with_itself() {
        let p = TcdmParams::default();
        // A 3-port core: three beats in bank 0 go one per cycle (3 cycles);
        // three beats in banks 0, 1, 2 go together (1 cycle); then two more
        // in banks 3, 4 (1 cycle).
        let same = phase(vec![beat(0, 8), beat(256, 8), beat(512, 8)], 0, 0);
        let spread = phase((0..5).map(|i| beat(8 * i, 8)).collect(), 0, 0);
        let s = stream(MasterSpec::core(0), 0, vec![same, spread]);
        assert_eq!(simulate(&p, std::slice::from_ref(&s)), vec![res(5, 0)]);
        let mut a = Arbiter::new(&p);
        let id = a.add_stream(0, s);
        assert_eq!(a.next_finish(), Some((5, id)));
    }

    #[test]
    fn stream_without_phases_finishes_at_its_start() {
        let p = TcdmParams::default();
        let s = stream(MasterSpec::dma(), 7, vec![]);
        assert_eq!(simulate(&p, std::slice::from_ref(&s)), vec![res(7, 0)]);
        let mut a = Arbiter::new(&p);
        let id = a.add_stream(0, s);
        assert_eq!(a.next_finish(), Some((7, id)));
        assert_eq!(a.advance_to(7), vec![(id, 7)]);
        assert_eq!(a.next_finish(), None);
    }

    #[test]
    fn lone_streams_are_jumped_not_stepped() {
        let p = TcdmParams::default();
        // 10 000 phases of 64 DMA beats: 640 000 cycles, no cycle stepped.
        let ph = phase((0..64).map(|i| beat(64 * i, 64)).collect(), 0, 1);
        let s = stream(MasterSpec::dma(), 0, vec![ph; 10_000]);
        let mut a = Arbiter::new(&p);
        let id = a.add_stream(0, s.clone());
        assert_eq!(a.next_finish(), Some((650_000, id)));
        a.advance_to(300_000); // partly through
                               // A second one after the first: never together.
        let later = Stream {
            start_cycle: 650_000,
            ..s
        };
        let id2 = a.add_stream(650_000, later);
        assert_eq!(a.advance_to(650_000), vec![(id, 650_000)]);
        assert_eq!(a.next_finish(), Some((1_300_000, id2)));
        assert_eq!(a.advance_to(2_000_000), vec![(id2, 1_300_000)]);
        assert_eq!(a.contended_cycles(), 0);
    }

    #[test]
    fn only_overlapping_beats_are_stepped() {
        let p = TcdmParams::default();
        // A: 100 beats from 0. B: 10 beats from 50, on other banks. Both
        // present beats during cycles 50..60 only.
        let a_s = stream(
            MasterSpec::dma(),
            0,
            vec![phase(vec![beat(0, 64); 100], 0, 0)],
        );
        let b_s = stream(
            MasterSpec::redmule(),
            50,
            vec![phase(vec![beat(64, 32); 10], 0, 0)],
        );
        let mut a = Arbiter::new(&p);
        a.add_stream(0, a_s);
        a.add_stream(50, b_s);
        let mut done = Vec::new();
        while let Some((f, _)) = a.next_finish() {
            done.extend(a.advance_to(f));
        }
        assert_eq!(done.iter().map(|d| d.1).collect::<Vec<_>>(), vec![60, 100]);
        assert_eq!(a.contended_cycles(), 10);
    }

    #[test]
    #[should_panic(expected = "already simulated")]
    fn adding_in_the_past_panics() {
        let p = TcdmParams::default();
        let mut a = Arbiter::new(&p);
        a.advance_to(100);
        a.add_stream(50, stream(MasterSpec::dma(), 60, vec![]));
    }

    // --- pseudo-random equivalence with the cycle-by-cycle reference ---

    /// Knuth's MMIX linear congruential generator.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random master with the unique id `id` (overlapping streams of one
    /// master would be ordered by stream id, which the drivers allocate
    /// differently).
    fn random_master(r: &mut Lcg, id: u32) -> MasterSpec {
        let mut m = match r.below(4) {
            0 => MasterSpec::dma(),
            1 => MasterSpec::redmule(),
            _ => MasterSpec::core(r.below(4) as u32),
        };
        if m.class == PriorityClass::Narrow {
            m.ports = 1 + r.below(3) as u32;
        }
        if r.below(4) == 0 {
            m.superbank = !m.superbank;
        }
        MasterSpec { id, ..m }
    }

    fn random_streams(r: &mut Lcg) -> Vec<Stream> {
        let n = 1 + r.below(6);
        (0..n)
            .map(|i| {
                let master = random_master(r, i as u32);
                let width = match master.class {
                    PriorityClass::Wide => 64,
                    PriorityClass::External => 32,
                    PriorityClass::Narrow => 8,
                };
                let phases = (0..r.below(5))
                    .map(|_| {
                        let beats = (0..r.below(9))
                            .map(|_| {
                                // A small region (1 KiB, 4 rows of banks) to
                                // force conflicts; sometimes misaligned or short.
                                let bytes = if r.below(5) == 0 {
                                    1 + r.below(width) as u32
                                } else {
                                    width as u32
                                };
                                let addr = if r.below(3) == 0 {
                                    r.below(1024)
                                } else {
                                    r.below(1024 / width) * width
                                };
                                beat(addr, bytes)
                            })
                            .collect();
                        phase(beats, r.below(12), r.below(4))
                    })
                    .collect();
                stream(master, r.below(40), phases)
            })
            .collect()
    }

    /// Drives an arbiter the way the timing layer would: streams added at
    /// their start, completions collected at the predicted finishes, with
    /// random extra calls (early adds, intermediate advances, repeated
    /// look-aheads) that must not change anything.
    fn drive(p: &TcdmParams, streams: &[Stream], r: &mut Lcg, mode: u64) -> Vec<StreamResult> {
        let mut order: Vec<usize> = (0..streams.len()).collect();
        order.sort_by_key(|&i| (streams[i].start_cycle, i));
        let mut pending = order.into_iter().peekable();
        let mut a = Arbiter::new(p);
        let mut idx: BTreeMap<StreamId, usize> = BTreeMap::new();
        let mut out: Vec<Option<StreamResult>> = vec![None; streams.len()];
        fn record(
            a: &mut Arbiter,
            t: u64,
            idx: &BTreeMap<StreamId, usize>,
            out: &mut [Option<StreamResult>],
        ) {
            for (id, res) in a.advance_to_results(t) {
                assert!(res.finish_cycle <= t);
                let slot = &mut out[idx[&id]];
                assert!(slot.is_none());
                *slot = Some(res);
            }
        }
        loop {
            let nf = a.next_finish();
            if mode == 2 && r.below(2) == 0 {
                assert_eq!(a.next_finish(), nf); // cached, same answer
            }
            let na = pending.peek().map(|&i| streams[i].start_cycle);
            if mode == 1 && r.below(3) == 0 {
                // Advance part of the way to the next event first.
                let target = match (nf, na) {
                    (Some((f, _)), Some(s)) => f.min(s),
                    (Some((f, _)), None) => f,
                    (None, Some(s)) => s,
                    (None, None) => a.now(),
                };
                let t = a.now().max(target.saturating_sub(r.below(20)));
                record(&mut a, t, &idx, &mut out);
                continue;
            }
            match (nf, na) {
                (None, None) => break,
                (Some((f, id)), s) if s.is_none_or(|s| f <= s) => {
                    record(&mut a, f, &idx, &mut out);
                    assert_eq!(out[idx[&id]].map(|x| x.finish_cycle), Some(f));
                }
                (_, Some(s)) => {
                    let i = pending.next().unwrap();
                    // Sometimes announce a stream before its start.
                    let now = if mode == 2 {
                        a.now().max(s.saturating_sub(r.below(10)))
                    } else {
                        s
                    };
                    // Half of them prepared first.
                    let id = if i % 2 == 0 {
                        a.add_stream(now.min(s), streams[i].clone())
                    } else {
                        let st = &streams[i];
                        let prepared = a.prepare(st.master, &st.phases);
                        a.add_prepared(now.min(s), s, prepared)
                    };
                    idx.insert(id, i);
                }
                _ => unreachable!(),
            }
        }
        assert_eq!(a.stream_count(), 0);
        out.into_iter().map(Option::unwrap).collect()
    }

    #[test]
    fn arbiter_matches_cycle_by_cycle_simulation_on_random_streams() {
        let p = TcdmParams::default();
        let mut r = Lcg(0x5eed);
        for case in 0..400 {
            let streams = random_streams(&mut r);
            let reference = simulate(&p, &streams);
            for mode in 0..3 {
                let got = drive(&p, &streams, &mut r, mode);
                assert_eq!(got, reference, "case {case}, mode {mode}: {streams:?}");
            }
            // All added up front, at cycle 0.
            let mut a = Arbiter::new(&p);
            let ids: Vec<StreamId> = streams.iter().map(|s| a.add_stream(0, s.clone())).collect();
            let mut got = BTreeMap::new();
            while let Some((f, _)) = a.next_finish() {
                got.extend(a.advance_to_results(f));
            }
            let got: Vec<StreamResult> = ids.iter().map(|id| got[id]).collect();
            assert_eq!(got, reference, "case {case}, all at once");
        }
    }

    #[test]
    fn reference_never_beats_the_lone_master() {
        // Stall accounting is non-negative and each stream finishes no earlier
        // than alone.
        let p = TcdmParams::default();
        let mut r = Lcg(42);
        for _ in 0..200 {
            let streams = random_streams(&mut r);
            let together = simulate(&p, &streams);
            for (s, t) in streams.iter().zip(&together) {
                let alone = simulate(&p, std::slice::from_ref(s))[0];
                assert_eq!(alone.stall_cycles, 0);
                assert!(t.finish_cycle >= alone.finish_cycle);
            }
        }
    }

    /// The banks of a beat by the definition: unit by unit.
    fn mask_by_units(geo: &Geometry, beat: &Beat, superbank: bool) -> u128 {
        let first = beat.addr;
        let last = first + (beat.bytes.max(1) as u64) - 1;
        let bank_bytes = 1u64 << geo.bank_shift;
        let (unit, count, width) = if superbank {
            (bank_bytes * geo.sb_banks, geo.superbanks, geo.sb_banks)
        } else {
            (bank_bytes, geo.banks, 1)
        };
        let (u0, u1) = (first / unit, last / unit);
        if u1 - u0 + 1 >= count {
            return low_mask(geo.banks);
        }
        let mut m = 0u128;
        for u in u0..=u1 {
            m |= low_mask(width) << ((u % count) * width);
        }
        m
    }

    #[test]
    fn bank_masks_match_the_unit_by_unit_definition() {
        let mut r = Lcg(7);
        for (banks, width, sb) in [
            (32, 64, 8),
            (128, 64, 8),
            (128, 8, 128),
            (16, 32, 4),
            (1, 8, 1),
            (64, 128, 2),
        ] {
            let p = TcdmParams {
                size: Bytes(banks as u64 * width as u64 / 8 * 16),
                banks,
                bank_width_bits: width,
                dma_superbank_banks: sb,
            };
            p.validate().unwrap();
            let geo = Geometry::new(&p);
            for _ in 0..2000 {
                let b = beat(r.below(1 << 16), r.below(3000) as u32);
                for superbank in [false, true] {
                    assert_eq!(
                        geo.mask(&b, superbank),
                        mask_by_units(&geo, &b, superbank),
                        "{p:?} {b:?} superbank {superbank}"
                    );
                    let first = geo.first_bank(&b, superbank) as u64;
                    assert!(first < banks as u64);
                    assert_ne!(geo.mask(&b, superbank) & (1u128 << first), 0);
                }
            }
        }
    }

    #[test]
    fn a_prepared_stream_can_be_added_many_times() {
        let p = TcdmParams::default();
        let mut r = Lcg(99);
        for case in 0..100 {
            let base = random_streams(&mut r);
            // Each stream twice: the copy later, or overlapping itself.
            let mut streams = base.clone();
            streams.extend(base.iter().map(|s| Stream {
                start_cycle: s.start_cycle + r.below(30),
                ..s.clone()
            }));
            let reference = simulate(&p, &streams);
            let mut a = Arbiter::new(&p);
            let prepared: Vec<_> = base
                .iter()
                .map(|s| a.prepare(s.master, &s.phases))
                .collect();
            let ids: Vec<StreamId> = streams
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let pr = Arc::clone(&prepared[i % base.len()]);
                    a.add_prepared(0, s.start_cycle, pr)
                })
                .collect();
            let mut got = BTreeMap::new();
            while let Some((f, _)) = a.next_finish() {
                got.extend(a.advance_to_results(f));
            }
            let got: Vec<StreamResult> = ids.iter().map(|id| got[id]).collect();
            assert_eq!(got, reference, "case {case}");
        }
    }

    #[test]
    #[should_panic(expected = "another TCDM geometry")]
    fn a_stream_prepared_for_another_geometry_panics() {
        let small = TcdmParams {
            banks: 16,
            ..TcdmParams::default()
        };
        let other = Arbiter::new(&small).prepare(MasterSpec::dma(), &[]);
        Arbiter::new(&TcdmParams::default()).add_prepared(0, 0, other);
    }

    /// Two or three masters with long phases over a small region: long
    /// stretches of contention, conflicting or not, between masters of
    /// different classes or of one (the batched paths of the arbiter).
    fn long_streams(r: &mut Lcg) -> Vec<Stream> {
        let n = 2 + r.below(2);
        let same_class = r.below(3) == 0;
        (0..n)
            .map(|i| {
                let mut master = random_master(r, i as u32);
                if same_class {
                    master.class = PriorityClass::External;
                }
                if r.below(2) == 0 {
                    master.ports = 1;
                }
                let width = [8u64, 32, 64][r.below(3) as usize];
                let region = [256u64, 1024, 4096][r.below(3) as usize];
                let phases = (0..1 + r.below(4))
                    .map(|_| {
                        let mut addr = r.below(region / width) * width;
                        let stride = [width, width, 2 * width, 256][r.below(4) as usize];
                        let beats = (0..r.below(120))
                            .map(|_| {
                                if r.below(8) == 0 {
                                    addr = r.below(region);
                                }
                                let b = beat(addr % region, width as u32);
                                addr += stride;
                                b
                            })
                            .collect();
                        phase(beats, r.below(150), r.below(5))
                    })
                    .collect();
                stream(master, r.below(60), phases)
            })
            .collect()
    }

    #[test]
    fn arbiter_matches_cycle_by_cycle_simulation_on_long_contended_streams() {
        let mut r = Lcg(0xbeef);
        for case in 0..300 {
            let p = if case % 3 == 2 {
                TcdmParams {
                    banks: 16,
                    dma_superbank_banks: 4,
                    ..TcdmParams::default()
                }
            } else {
                TcdmParams::default()
            };
            let streams = long_streams(&mut r);
            let reference = simulate(&p, &streams);
            for mode in 0..3 {
                let got = drive(&p, &streams, &mut r, mode);
                assert_eq!(got, reference, "case {case}, mode {mode}: {streams:?}");
            }
        }
    }
}
