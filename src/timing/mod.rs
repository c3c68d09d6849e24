//! The timing run: executes a mapped graph on the discrete-event engine and
//! returns a [`Timeline`] (which unit ran which job of which operation and
//! token group, and when), with summaries.
//!
//! Components: one per tile + PMCA pair, holding the models of its units
//! (AIMC tile, iDMA, RedMule, the Snitch cores as kernel cost models, and
//! the banked TCDM that arbitrates RedMule's and the DMA's beats), and a
//! scheduler that releases each job when its inputs are ready and its unit
//! is free. Each unit runs one job at a time, in order of token group, then
//! of the description. Events mark job starts and ends only.

pub mod occupancy;
pub mod summary;
pub mod tasks;

use crate::config::Architecture;
use crate::engine::{Component, ComponentId, Ctx, EngineBuilder, PortId, RunStats};
use crate::graph::Graph;
use crate::hw::access::Phase;
use crate::hw::dma::{DmaPlan, ExtLink, TcdmSide};
use crate::hw::redmule::{self, Operands};
use crate::hw::snitch::Kernel;
use crate::hw::tcdm::{Arbiter, MasterSpec, PreparedStream, StreamId};
use crate::mapping::Mapping;
use crate::units::{Clock, Cycles, Ps};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
pub use tasks::{TaskGraph, TaskId};

/// The units of a tile + PMCA pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Unit {
    Tile,
    Dma,
    RedMule,
    Cores,
}

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Tile, Unit::Dma, Unit::RedMule, Unit::Cores];
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Unit::Tile => "tile",
            Unit::Dma => "dma",
            Unit::RedMule => "redmule",
            Unit::Cores => "cores",
        }
    }
}

/// What a job asks of its unit. Hashable: a pair caches the TCDM streams of
/// the DMA and RedMule jobs it has seen, keyed by their work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// A zero-time join of dependencies.
    None,
    /// `tokens` back-to-back MVMs; `load` is one token's input transfer over
    /// the link, `latency` the link's latency (paid once per group).
    Aimc { tokens: u32, load: Ps, latency: Ps },
    /// A 1D DMA transfer of `bytes` between the TCDM (at `tcdm_addr`) and
    /// the outside (the link, another pair or the L2), whose side moves at
    /// most `ext_bytes_per_cycle` and has `ext_latency` (rounded up to PMCA
    /// cycles).
    Dma {
        bytes: u64,
        tcdm_addr: u64,
        /// Towards the TCDM (true) or out of it.
        into_tcdm: bool,
        ext_bytes_per_cycle: u64,
        ext_latency: Ps,
    },
    /// A RedMule job `Z (m x k) = X (m x n) W (n x k) [+ Y]`, after a core
    /// spends `program_cycles` writing its registers.
    RedMule {
        m: u64,
        n: u64,
        k: u64,
        operands: Operands,
        program_cycles: u64,
    },
    /// A kernel on the cores (cost model), `cycles` long.
    Cores { cycles: u64, kernel: Option<Kernel> },
}

/// Which step of an operation a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Step {
    Tile,
    Out,
    Post,
    LoraDown,
    LoraUp,
    Xfer { to: u32 },
    ToL2,
    Kernel,
    LoadK,
    LoadV,
    Scores,
    Softmax,
    Context,
    Join,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Tile => "tile",
            Step::Out => "out",
            Step::Post => "post",
            Step::LoraDown => "lora_down",
            Step::LoraUp => "lora_up",
            Step::Xfer { .. } => "xfer",
            Step::ToL2 => "to_l2",
            Step::Kernel => "kernel",
            Step::LoadK => "load_k",
            Step::LoadV => "load_v",
            Step::Scores => "scores",
            Step::Softmax => "softmax",
            Step::Context => "context",
            Step::Join => "join",
        }
    }
}

/// Engine messages.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Starts the scheduler.
    Kick,
    /// Scheduler -> pair: run this job.
    Start {
        task: TaskId,
        unit: Unit,
        work: Work,
    },
    /// Pair -> scheduler: the job is finished.
    Done { task: TaskId, unit: Unit },
    /// Pair -> itself: the TCDM arbiter's next completion, valid while
    /// `generation` is current.
    TcdmWake { generation: u64 },
}

/// The timing of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Ps,
    pub end: Ps,
}

/// The result of a timing run.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub tasks: TaskGraph,
    /// Start and end of every task, indexed by task id.
    pub intervals: Vec<Interval>,
    /// Busy time of each unit of each pair, `[pair][unit]`.
    pub busy: Vec<[Ps; 4]>,
    /// Cycles RedMule and DMA jobs lost to TCDM bank conflicts, per pair.
    pub tcdm_stall_cycles: Vec<u64>,
    pub makespan: Ps,
    pub stats: RunStats,
}

/// Options of a timing run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimingOptions {
    /// Arbitrate RedMule's and the DMA's TCDM beats bank by bank (exact
    /// conflicts); off: every job at its conflict-free time.
    pub tcdm_contention: bool,
}

impl Default for TimingOptions {
    fn default() -> Self {
        TimingOptions {
            tcdm_contention: true,
        }
    }
}

/// Runs the mapped graph and returns its timeline.
pub fn run(graph: &Graph, map: &Mapping, arch: &Architecture, opts: TimingOptions) -> Timeline {
    let tg = tasks::build(graph, map, arch);
    run_tasks(tg, map.pairs, arch, opts)
}

/// Runs an already built task graph.
pub fn run_tasks(tg: TaskGraph, pairs: u32, arch: &Architecture, opts: TimingOptions) -> Timeline {
    let arch = Arc::new(arch.clone());
    let mut b: EngineBuilder<Msg> = EngineBuilder::new();
    let n_tasks = tg.tasks.len();
    let sched = b.add(Box::new(Scheduler::new(tg, pairs)));
    let mut pair_ids = Vec::with_capacity(pairs as usize);
    for p in 0..pairs {
        let id = b.add(Box::new(Pair::new(p, arch.clone(), opts)));
        b.connect((sched, PortId(p as u16)), (id, PortId(0)));
        b.connect((id, PortId(0)), (sched, PortId(0)));
        pair_ids.push(id);
    }
    debug_assert!(pairs <= u16::MAX as u32, "Mapping::new refuses more pairs");
    let mut engine = b.build().expect("the timing layer wires a valid engine");
    engine
        .inject(Ps::ZERO, sched, PortId(0), Msg::Kick)
        .expect("time zero is never in the past");
    let stats = engine.run();
    let s: &mut Scheduler = engine.component_mut(sched).expect("scheduler");
    assert_eq!(
        s.finished as usize, n_tasks,
        "every task runs: the task graph has no cycles"
    );
    let tasks = std::mem::take(&mut s.tasks);
    let intervals = std::mem::take(&mut s.intervals);
    let makespan = intervals.iter().map(|i| i.end).max().unwrap_or(Ps::ZERO);
    let mut busy = Vec::with_capacity(pairs as usize);
    let mut stalls = Vec::with_capacity(pairs as usize);
    for id in pair_ids {
        let p: &Pair = engine.component(id).expect("pair");
        busy.push(p.busy);
        stalls.push(p.tcdm_stall_cycles);
    }
    Timeline {
        tasks,
        intervals,
        busy,
        tcdm_stall_cycles: stalls,
        makespan,
        stats,
    }
}

/// Releases jobs whose dependencies are met to their (idle) units.
struct Scheduler {
    tasks: TaskGraph,
    deps_left: Vec<u32>,
    intervals: Vec<Interval>,
    /// Ready jobs per unit, `[pair * 4 + unit]`, by (group, task id).
    ready: Vec<BinaryHeap<Reverse<(u32, TaskId)>>>,
    busy: Vec<bool>,
    finished: u32,
}

impl Scheduler {
    fn new(tasks: TaskGraph, pairs: u32) -> Scheduler {
        let n = tasks.tasks.len();
        let deps_left = tasks.tasks.iter().map(|t| t.deps).collect();
        Scheduler {
            tasks,
            deps_left,
            intervals: vec![
                Interval {
                    start: Ps::ZERO,
                    end: Ps::ZERO
                };
                n
            ],
            ready: vec![BinaryHeap::new(); pairs as usize * 4],
            busy: vec![false; pairs as usize * 4],
            finished: 0,
        }
    }

    /// Marks `task` ready; joins complete at once.
    fn make_ready(&mut self, task: TaskId, now: Ps, touched: &mut Vec<usize>) {
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            let tk = &self.tasks.tasks[t as usize];
            match tk.unit {
                Some((pair, unit)) => {
                    let slot = pair as usize * 4 + unit.index();
                    self.ready[slot].push(Reverse((tk.group, t)));
                    touched.push(slot);
                }
                None => {
                    self.intervals[t as usize] = Interval {
                        start: now,
                        end: now,
                    };
                    self.finished += 1;
                    for &s in &self.tasks.tasks[t as usize].succs {
                        self.deps_left[s as usize] -= 1;
                        if self.deps_left[s as usize] == 0 {
                            stack.push(s);
                        }
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, slots: &[usize], ctx: &mut Ctx<'_, Msg>) {
        for &slot in slots {
            if self.busy[slot] {
                continue;
            }
            if let Some(Reverse((_, t))) = self.ready[slot].pop() {
                self.busy[slot] = true;
                let task = &self.tasks.tasks[t as usize];
                let (pair, unit) = task.unit.expect("queued tasks have a unit");
                self.intervals[t as usize].start = ctx.now();
                ctx.send(
                    PortId(pair as u16),
                    Msg::Start {
                        task: t,
                        unit,
                        work: task.work.clone(),
                    },
                    Ps::ZERO,
                );
            }
        }
    }
}

impl Component<Msg> for Scheduler {
    fn name(&self) -> &str {
        "scheduler"
    }
    fn handle(&mut self, _port: PortId, msg: Msg, ctx: &mut Ctx<'_, Msg>) {
        let now = ctx.now();
        let mut touched = Vec::new();
        match msg {
            Msg::Kick => {
                let roots: Vec<TaskId> = (0..self.tasks.tasks.len() as TaskId)
                    .filter(|&t| self.deps_left[t as usize] == 0)
                    .collect();
                for t in roots {
                    self.make_ready(t, now, &mut touched);
                }
            }
            Msg::Done { task, unit } => {
                self.intervals[task as usize].end = now;
                self.finished += 1;
                let (pair, _) = self.tasks.tasks[task as usize].unit.expect("unit");
                let slot = pair as usize * 4 + unit.index();
                self.busy[slot] = false;
                touched.push(slot);
                let succs = std::mem::take(&mut self.tasks.tasks[task as usize].succs);
                for &s in &succs {
                    self.deps_left[s as usize] -= 1;
                    if self.deps_left[s as usize] == 0 {
                        self.make_ready(s, now, &mut touched);
                    }
                }
                self.tasks.tasks[task as usize].succs = succs;
            }
            Msg::Start { .. } | Msg::TcdmWake { .. } => {
                unreachable!("the scheduler only receives Kick and Done")
            }
        }
        touched.sort_unstable();
        touched.dedup();
        self.dispatch(&touched, ctx);
    }
}

/// Which TCDM master a stream belongs to.
#[derive(Debug, Clone, Copy)]
struct Pending {
    task: TaskId,
    unit: Unit,
    /// Picoseconds added after the TCDM side is done (the link or L2 latency).
    tail: Ps,
    ideal_cycles: u64,
    start_cycle: u64,
}

/// One tile + PMCA pair: the timing models of its units.
struct Pair {
    name: String,
    arch: Arc<Architecture>,
    clock: Clock,
    opts: TimingOptions,
    busy: [Ps; 4],
    arbiter: Arbiter,
    /// Streams in the arbiter: (stream id, what to report when it ends).
    in_tcdm: Vec<(StreamId, Pending)>,
    generation: u64,
    tcdm_stall_cycles: u64,
    /// The TCDM streams of the DMA and RedMule jobs seen so far, with their
    /// ideal cycles: jobs repeat (same shapes, same buffers) from one token
    /// group to the next.
    prepared: HashMap<Work, (Arc<PreparedStream>, u64), rustc_hash::FxBuildHasher>,
}

/// Distinct jobs a pair keeps prepared streams of; past it the cache starts
/// over (a bound on memory, not on correctness).
const PREPARED_CAP: usize = 4096;

impl Pair {
    fn new(index: u32, arch: Arc<Architecture>, opts: TimingOptions) -> Pair {
        Pair {
            name: format!("pair{index}"),
            clock: Clock::new(arch.pmca.clock),
            arbiter: Arbiter::new(&arch.pmca.tcdm),
            arch,
            opts,
            busy: [Ps::ZERO; 4],
            in_tcdm: Vec::new(),
            generation: 0,
            tcdm_stall_cycles: 0,
            prepared: HashMap::default(),
        }
    }

    /// The job's TCDM stream, prepared for the arbiter, and its ideal
    /// cycles (one beat per cycle, no conflict).
    fn prepared(&mut self, work: &Work) -> (Arc<PreparedStream>, u64) {
        if let Some((s, ideal)) = self.prepared.get(work) {
            return (Arc::clone(s), *ideal);
        }
        let (phases, master) = self.phases(work);
        let ideal: u64 = phases.iter().map(Phase::ideal_cycles).sum();
        let s = self.arbiter.prepare(master, &phases);
        if self.prepared.len() >= PREPARED_CAP {
            self.prepared.clear();
        }
        self.prepared.insert(work.clone(), (Arc::clone(&s), ideal));
        (s, ideal)
    }

    /// The TCDM-side phases of a DMA or RedMule job, and the cycles the
    /// job's external side needs (the DMA's link or L2 side).
    fn phases(&self, work: &Work) -> (Vec<Phase>, MasterSpec) {
        match work {
            Work::Dma { .. } => (
                dma_plan(&self.arch, &self.clock, work).phases(),
                MasterSpec::dma(),
            ),
            Work::RedMule {
                m,
                n,
                k,
                operands,
                program_cycles,
            } => {
                let mut ph = vec![Phase {
                    beats: Vec::new(),
                    min_cycles: 0,
                    tail_cycles: *program_cycles,
                }];
                ph.extend(redmule::job_phases(
                    &self.arch.pmca.redmule,
                    *m,
                    *n,
                    *k,
                    *operands,
                ));
                (ph, MasterSpec::redmule())
            }
            _ => unreachable!("only DMA and RedMule jobs touch the arbiter"),
        }
    }

    /// Schedules the arbiter's next completion.
    fn arm(&mut self, ctx: &mut Ctx<'_, Msg>) {
        self.generation += 1;
        if let Some((cycle, _)) = self.arbiter.next_finish() {
            let at = self.clock.to_ps(Cycles(cycle));
            ctx.wake_self(
                PortId(1),
                Msg::TcdmWake {
                    generation: self.generation,
                },
                at.saturating_sub(ctx.now()),
            );
        }
    }

    /// Reports the streams finished by `now`.
    fn drain(&mut self, ctx: &mut Ctx<'_, Msg>) {
        let now_cycle = self.clock.cycles_ceil(ctx.now()).0;
        for (id, res) in self.arbiter.advance_to_results(now_cycle) {
            let pos = self
                .in_tcdm
                .iter()
                .position(|(s, _)| *s == id)
                .expect("a finished stream was started here");
            let (_, p) = self.in_tcdm.swap_remove(pos);
            let end = self.clock.to_ps(Cycles(res.finish_cycle)) + p.tail;
            self.tcdm_stall_cycles += res.stall_cycles;
            // Busy time was charged at the ideal length; add what conflicts cost.
            let actual = res.finish_cycle - p.start_cycle;
            self.busy[p.unit.index()] += self
                .clock
                .to_ps(Cycles(actual.saturating_sub(p.ideal_cycles)));
            self.finish(p.task, p.unit, end, ctx);
        }
    }

    fn finish(&mut self, task: TaskId, unit: Unit, end: Ps, ctx: &mut Ctx<'_, Msg>) {
        ctx.send(
            PortId(0),
            Msg::Done { task, unit },
            end.saturating_sub(ctx.now()),
        );
    }
}

/// The DMA's plan for a transfer: the TCDM side at `tcdm_addr`, the other
/// side (link, another pair, the L2) at address 0 with its rate and latency.
fn dma_plan(arch: &Architecture, clock: &Clock, work: &Work) -> DmaPlan {
    let Work::Dma {
        bytes,
        tcdm_addr,
        into_tcdm,
        ext_bytes_per_cycle,
        ext_latency,
    } = *work
    else {
        unreachable!("dma_plan takes DMA work")
    };
    let ext = ExtLink {
        bytes_per_cycle: Some(ext_bytes_per_cycle),
        latency_cycles: clock.cycles_ceil(ext_latency).0,
    };
    if into_tcdm {
        arch.pmca.dma.plan(0, tcdm_addr, bytes, TcdmSide::Dst, ext)
    } else {
        arch.pmca.dma.plan(tcdm_addr, 0, bytes, TcdmSide::Src, ext)
    }
}

impl Component<Msg> for Pair {
    fn name(&self) -> &str {
        &self.name
    }
    fn handle(&mut self, _port: PortId, msg: Msg, ctx: &mut Ctx<'_, Msg>) {
        match msg {
            Msg::Start { task, unit, work } => {
                let now = ctx.now();
                let uses_tcdm = matches!(work, Work::Dma { .. } | Work::RedMule { .. });
                if uses_tcdm && self.opts.tcdm_contention {
                    let (prepared, ideal) = self.prepared(&work);
                    let tail = Ps::ZERO;
                    // Jobs start on a clock edge.
                    let start_cycle = self.clock.cycles_ceil(now).0;
                    self.drain(ctx);
                    let id = self
                        .arbiter
                        .add_prepared(start_cycle, start_cycle, prepared);
                    self.in_tcdm.push((
                        id,
                        Pending {
                            task,
                            unit,
                            tail,
                            ideal_cycles: ideal,
                            start_cycle,
                        },
                    ));
                    // Busy time is charged at the ideal length here and
                    // corrected by the stalls when the stream ends.
                    self.busy[unit.index()] += self.clock.to_ps(Cycles(ideal)) + tail;
                    self.arm(ctx);
                    return;
                }
                let dur = match &work {
                    Work::None => Ps::ZERO,
                    Work::Aimc {
                        tokens,
                        load,
                        latency,
                    } => self
                        .arch
                        .aimc
                        .group_latency(*tokens as u64, *load, *latency),
                    Work::Cores { cycles, .. } => {
                        ctx.clock_edge(&self.clock, Cycles(*cycles)) - now
                    }
                    Work::RedMule {
                        m,
                        n,
                        k,
                        operands,
                        program_cycles,
                    } => {
                        let job = if operands.y_addr.is_some() {
                            redmule::job_cycles(&self.arch.pmca.redmule, *m, *n, *k)
                        } else {
                            redmule::matmul_cycles(&self.arch.pmca.redmule, *m, *n, *k)
                        };
                        ctx.clock_edge(&self.clock, Cycles(program_cycles + job.total)) - now
                    }
                    Work::Dma { .. } => {
                        let c = dma_plan(&self.arch, &self.clock, &work).ideal_cycles();
                        ctx.clock_edge(&self.clock, Cycles(c)) - now
                    }
                };
                self.busy[unit.index()] += dur;
                self.finish(task, unit, now + dur, ctx);
            }
            Msg::TcdmWake { generation } => {
                if generation != self.generation {
                    return;
                }
                let before = self.in_tcdm.len();
                self.drain(ctx);
                debug_assert!(self.in_tcdm.len() < before);
                self.arm(ctx);
            }
            Msg::Kick | Msg::Done { .. } => unreachable!("pairs receive Start and TcdmWake"),
        }
    }
}

/// Identifies a pair's component (for tests and traces).
pub fn pair_component(pair: u32) -> ComponentId {
    ComponentId(pair + 1)
}
