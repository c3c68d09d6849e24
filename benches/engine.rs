//! Event-engine throughput: the engine against a bare `BinaryHeap` loop that
//! replays the same event pattern with no components (the lower bound).
//!
//! Workload: 64 components, each with 4 output ports (ring neighbour and
//! three long-range links), 256 tokens in flight. On every event the
//! receiving component draws from its own LCG a port and a delay of
//! 1..=1000 ps and forwards the token, until the token's hop budget is spent.
//! Both variants must end at the same simulated time with the same event
//! count, which checks that they did the same work.
//!
//! Run: `cargo bench --bench engine`. Prints the median of several runs.

use aimcsim::engine::{Component, ComponentId, Ctx, EngineBuilder, PortId, DEFAULT_PRIORITY};
use aimcsim::units::Ps;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hint::black_box;
use std::time::Instant;

const COMPONENTS: usize = 64;
const PORTS: usize = 4;
const TOKENS: usize = 256;
const HOPS_PER_TOKEN: u64 = 39_062;
/// Each token is handled once on injection plus once per hop.
const EVENTS: u64 = TOKENS as u64 * (HOPS_PER_TOKEN + 1);
const REPS: usize = 5;
const TARGET_EVENTS_PER_S: f64 = 20e6;

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 32
}

fn seed(i: usize) -> u64 {
    0x9E37_79B9_7F4A_7C15 ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Where output port `p` of component `i` leads (same input port number).
fn dest(i: usize, p: usize) -> usize {
    match p {
        0 => (i + 1) % COMPONENTS,
        1 => (i * 7 + 3) % COMPONENTS,
        2 => (i + COMPONENTS / 2) % COMPONENTS,
        _ => (i * 5 + 1) % COMPONENTS,
    }
}

/// Draws (out port, delay in ps) from a component's generator.
#[inline]
fn draw(state: &mut u64) -> (usize, u64) {
    let r = lcg(state);
    ((r as usize) & (PORTS - 1), 1 + (r >> 2) % 1000)
}

struct Node {
    name: String,
    state: u64,
    received: u64,
}

impl Component<u64> for Node {
    fn name(&self) -> &str {
        &self.name
    }
    fn handle(&mut self, _port: PortId, hops: u64, ctx: &mut Ctx<'_, u64>) {
        self.received += 1;
        if hops > 0 {
            let (p, d) = draw(&mut self.state);
            ctx.send(PortId(p as u16), hops - 1, Ps(d));
        }
    }
}

/// Runs the engine once; returns (events, host seconds, final sim time).
fn run_engine() -> (u64, f64, u64) {
    let mut b = EngineBuilder::new();
    let ids: Vec<ComponentId> = (0..COMPONENTS)
        .map(|i| {
            b.add(Box::new(Node {
                name: format!("node{i}"),
                state: seed(i),
                received: 0,
            }))
        })
        .collect();
    for (i, &id) in ids.iter().enumerate() {
        for p in 0..PORTS {
            b.connect((id, PortId(p as u16)), (ids[dest(i, p)], PortId(p as u16)));
        }
    }
    let mut e = b.build().expect("valid wiring");
    for t in 0..TOKENS {
        e.inject(Ps(t as u64), ids[t % COMPONENTS], PortId(0), HOPS_PER_TOKEN)
            .unwrap();
    }
    let stats = e.run();
    let received: u64 = ids
        .iter()
        .map(|&id| e.component::<Node>(id).unwrap().received)
        .sum();
    assert_eq!(received, stats.events);
    (stats.events, stats.host_seconds, stats.sim_time.0)
}

/// The bare lower bound: the same heap key and event pattern, no components.
struct Ev {
    key: u128,
    dst: u32,
    msg: u64,
}
impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    fn cmp(&self, o: &Self) -> Ordering {
        o.key.cmp(&self.key)
    }
}

fn key(t: u64, seq: u64) -> u128 {
    ((t as u128) << 64) | ((DEFAULT_PRIORITY as u128) << 56) | seq as u128
}

fn run_bare_heap() -> (u64, f64, u64) {
    let routes: Vec<[u32; PORTS]> = (0..COMPONENTS)
        .map(|i| std::array::from_fn(|p| dest(i, p) as u32))
        .collect();
    let mut states: Vec<u64> = (0..COMPONENTS).map(seed).collect();
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    for t in 0..TOKENS {
        heap.push(Ev {
            key: key(t as u64, seq),
            dst: (t % COMPONENTS) as u32,
            msg: HOPS_PER_TOKEN,
        });
        seq += 1;
    }
    let start = Instant::now();
    let mut events = 0u64;
    let mut now = 0u64;
    while let Some(ev) = heap.pop() {
        now = (ev.key >> 64) as u64;
        events += 1;
        if ev.msg > 0 {
            let d = ev.dst as usize;
            let (p, delay) = draw(&mut states[d]);
            heap.push(Ev {
                key: key(now + delay, seq),
                dst: routes[d][p],
                msg: ev.msg - 1,
            });
            seq += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(&states);
    (events, secs, now)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!(
        "engine bench: {COMPONENTS} components x {PORTS} out ports, {TOKENS} tokens in flight, \
         delays 1..=1000 ps (LCG), {EVENTS} events per run, median of {REPS} runs"
    );
    let (mut eng, mut bare) = (Vec::new(), Vec::new());
    let mut end_time = None;
    // Interleaved so that both variants see the same machine conditions.
    for _ in 0..REPS {
        let (n, s, t) = run_engine();
        assert_eq!(n, EVENTS);
        eng.push(s);
        let (n2, s2, t2) = run_bare_heap();
        assert_eq!((n2, t2), (n, t), "bare loop did different work");
        bare.push(s2);
        end_time = Some(t);
    }
    let (e_s, b_s) = (median(eng), median(bare));
    let (e_eps, b_eps) = (EVENTS as f64 / e_s, EVENTS as f64 / b_s);
    println!(
        "  simulated time per run: {}",
        Ps(end_time.expect("at least one run"))
    );
    println!(
        "  engine (Box<dyn Component>, wired ports): {:>7.2} M events/s  ({:.1} ms/run, {:.1} ns/event)",
        e_eps / 1e6,
        e_s * 1e3,
        e_s * 1e9 / EVENTS as f64
    );
    println!(
        "  bare BinaryHeap loop (lower bound):        {:>7.2} M events/s  ({:.1} ms/run, {:.1} ns/event)",
        b_eps / 1e6,
        b_s * 1e3,
        b_s * 1e9 / EVENTS as f64
    );
    println!(
        "  engine / bare heap throughput ratio: {:.2} (engine overhead {:.1} ns/event)",
        e_eps / b_eps,
        (e_s - b_s) * 1e9 / EVENTS as f64
    );
    println!(
        "  target {:.0} M events/s: {}",
        TARGET_EVENTS_PER_S / 1e6,
        if e_eps >= TARGET_EVENTS_PER_S {
            "met"
        } else {
            "NOT met"
        }
    );
}
