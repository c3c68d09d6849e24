use super::queue::pack_key;
use super::*;
use crate::units::{Clock, Cycles, Hz, Ps};
use std::cell::RefCell;
use std::rc::Rc;

/// (time ps, component, in port, message): one handler call.
type Rec = (u64, u32, u16, u32);
type Log = Rc<RefCell<Vec<Rec>>>;
type Handler = Box<dyn FnMut(PortId, u32, &mut Ctx<'_, u32>)>;

/// A component that logs every call to a shared log, then runs a closure.
struct Scripted {
    name: String,
    log: Log,
    f: Handler,
}

impl Component<u32> for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn handle(&mut self, port: PortId, msg: u32, ctx: &mut Ctx<'_, u32>) {
        self.log
            .borrow_mut()
            .push((ctx.now().0, ctx.self_id().0, port.0, msg));
        (self.f)(port, msg, ctx);
    }
}

fn scripted(
    name: &str,
    log: &Log,
    f: impl FnMut(PortId, u32, &mut Ctx<'_, u32>) + 'static,
) -> Box<dyn Component<u32>> {
    Box::new(Scripted {
        name: name.to_string(),
        log: log.clone(),
        f: Box::new(f),
    })
}

fn recorder(name: &str, log: &Log) -> Box<dyn Component<u32>> {
    scripted(name, log, |_, _, _| {})
}

fn new_log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

#[test]
fn key_orders_by_time_then_priority_then_sequence() {
    let k = |t, p, s| pack_key(Ps(t), p, s);
    assert!(k(1, 255, 999) < k(2, 0, 0));
    assert!(k(5, 3, 999) < k(5, 4, 0));
    assert!(k(5, 4, 1) < k(5, 4, 2));
    assert!(k(u64::MAX, 255, (1 << 56) - 1) > k(u64::MAX - 1, 255, (1 << 56) - 1));
    assert_eq!(super::queue::key_time(k(123_456, 7, 89)), Ps(123_456));
}

#[test]
fn equal_times_run_in_priority_then_insertion_order() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let rec = b.add(recorder("rec", &log));
    // On message 0 the spawner schedules, all for the same instant (t=20):
    // to the recorder at default, low and high priority, and to itself.
    let spawner = b.add(scripted("spawner", &log, |_, msg, ctx| {
        if msg == 0 {
            ctx.send(PortId(0), 10, Ps(10));
            ctx.send_with_priority(PortId(0), 11, Ps(10), 200);
            ctx.send_with_priority(PortId(0), 12, Ps(10), 0);
            ctx.wake_self(PortId(1), 13, Ps(10));
            ctx.send(PortId(0), 14, Ps(10));
            ctx.wake_self_with_priority(PortId(1), 15, Ps(10), 0);
        }
    }));
    b.connect((spawner, PortId(0)), (rec, PortId(0)));
    let mut e = b.build().unwrap();
    // Injected at one time with mixed priorities, and out of time order.
    e.inject(Ps(10), rec, PortId(0), 1).unwrap();
    e.inject_with_priority(Ps(10), rec, PortId(0), 2, 5)
        .unwrap();
    e.inject(Ps(10), rec, PortId(0), 3).unwrap();
    e.inject_with_priority(Ps(10), rec, PortId(0), 4, 5)
        .unwrap();
    e.inject_with_priority(Ps(10), rec, PortId(0), 5, 0)
        .unwrap();
    e.inject_with_priority(Ps(5), rec, PortId(0), 6, 255)
        .unwrap();
    e.inject(Ps(10), spawner, PortId(0), 0).unwrap();
    let stats = e.run();
    let got: Vec<(u64, u32, u32)> = log.borrow().iter().map(|r| (r.0, r.1, r.3)).collect();
    assert_eq!(
        got,
        vec![
            (5, 0, 6),
            (10, 0, 5),
            (10, 0, 2),
            (10, 0, 4),
            (10, 0, 1),
            (10, 0, 3),
            (10, 1, 0),
            (20, 0, 12),
            (20, 1, 15),
            (20, 0, 10),
            (20, 1, 13),
            (20, 0, 14),
            (20, 0, 11),
        ]
    );
    assert_eq!(stats.events, 13);
    assert_eq!(stats.sim_time, Ps(20));
    assert_eq!(stats.reason, StopReason::QueueEmpty);
}

/// A ring of `n` components, each forwarding a hop-count token either to its
/// neighbour (out port 0) or across the ring (out port 1) after a
/// pseudo-random delay in `0..max_delay` ps; zero delays are common when
/// `max_delay` is small, so many events share a time.
fn ring(n: u32, max_delay: u64, log: &Log) -> Engine<u32> {
    let mut b = EngineBuilder::new();
    let ids: Vec<ComponentId> = (0..n)
        .map(|i| {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
            let mut last = Ps(0);
            b.add(scripted(&format!("node{i}"), log, move |_, hops, ctx| {
                assert!(ctx.now() >= last, "time went backwards");
                last = ctx.now();
                if hops > 0 {
                    let r = lcg(&mut state);
                    let port = PortId((r & 1) as u16);
                    ctx.send(port, hops - 1, Ps((r >> 1) % max_delay));
                }
            }))
        })
        .collect();
    for i in 0..n as usize {
        let next = ids[(i + 1) % n as usize];
        let across = ids[(i * 7 + 3) % n as usize];
        b.connect((ids[i], PortId(0)), (next, PortId(0)));
        b.connect((ids[i], PortId(1)), (across, PortId(1)));
    }
    let mut e = b.build().unwrap();
    for (k, &id) in ids.iter().enumerate() {
        e.inject(Ps(k as u64 % 3), id, PortId(0), 500).unwrap();
    }
    e
}

#[test]
fn time_never_goes_backwards() {
    let log = new_log();
    let mut e = ring(8, 4, &log);
    let stats = e.run();
    assert_eq!(stats.events, 8 * 501);
    let log = log.borrow();
    assert!(log.windows(2).all(|w| w[0].0 <= w[1].0));
    // Many ties were exercised, not just strictly increasing times.
    assert!(log.windows(2).filter(|w| w[0].0 == w[1].0).count() > 100);
    assert_eq!(Ps(log.last().unwrap().0), e.now());
}

#[test]
fn routing_reaches_the_right_component_and_port() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let a = b.add(recorder("a", &log));
    let bb = b.add(recorder("b", &log));
    let src = b.add(scripted("src", &log, |_, _, ctx| {
        ctx.send(PortId(0), 100, Ps(1));
        ctx.send(PortId(1), 101, Ps(2));
        ctx.send(PortId(2), 102, Ps(3));
        ctx.send(PortId(5), 105, Ps(4));
    }));
    b.connect((src, PortId(0)), (a, PortId(3)))
        .connect((src, PortId(1)), (bb, PortId(0)))
        .connect((src, PortId(2)), (a, PortId(1)))
        // Fan-in: a second output onto a's port 3.
        .connect((src, PortId(5)), (a, PortId(3)));
    let mut e = b.build().unwrap();
    e.inject(Ps(0), src, PortId(0), 0).unwrap();
    e.run();
    assert_eq!(
        *log.borrow(),
        vec![
            (0, 2, 0, 0),
            (1, 0, 3, 100),
            (2, 1, 0, 101),
            (3, 0, 1, 102),
            (4, 0, 3, 105),
        ]
    );
    assert_eq!(e.name(src), Some("src"));
    assert_eq!(e.component_count(), 3);
}

#[test]
fn run_until_stops_before_later_events_and_keeps_them() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let r = b.add(recorder("r", &log));
    let mut e = b.build().unwrap();
    for t in [300, 100, 200] {
        e.inject(Ps(t), r, PortId(0), t as u32).unwrap();
    }
    let s = e.run_until(Ps(200));
    assert_eq!(
        (s.events, s.reason, s.sim_time),
        (2, StopReason::TimeLimit, Ps(200))
    );
    assert_eq!(e.pending_events(), 1);
    assert_eq!(e.next_event_time(), Some(Ps(300)));
    let s = e.run_until(Ps(250));
    assert_eq!((s.events, s.sim_time), (0, Ps(250)));
    assert_eq!(e.now(), Ps(250));
    let s = e.run();
    assert_eq!(
        (s.events, s.reason, s.sim_time),
        (1, StopReason::QueueEmpty, Ps(300))
    );
    assert_eq!(e.total_events(), 3);
    let times: Vec<u64> = log.borrow().iter().map(|r| r.0).collect();
    assert_eq!(times, vec![100, 200, 300]);
    // Running to a limit past the last event still simulates up to it.
    let s = e.run_until(Ps(1000));
    assert_eq!(
        (s.events, s.reason, e.now()),
        (0, StopReason::QueueEmpty, Ps(1000))
    );
}

#[test]
fn split_runs_match_one_run() {
    let (log_a, log_b) = (new_log(), new_log());
    let mut a = ring(5, 50, &log_a);
    let mut b = ring(5, 50, &log_b);
    a.run();
    let mut t = 0;
    while b.pending_events() > 0 {
        t += 777;
        b.run_until(Ps(t));
    }
    assert_eq!(*log_a.borrow(), *log_b.borrow());
}

#[test]
fn double_connected_out_port_is_a_build_error() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let x = b.add(recorder("x", &log));
    let y = b.add(recorder("y", &log));
    b.connect((x, PortId(0)), (y, PortId(0)));
    b.connect((x, PortId(0)), (y, PortId(1)));
    let err = b.build().err().unwrap();
    assert_eq!(
        err,
        EngineError::PortConnectedTwice {
            id: x,
            name: "x".into(),
            port: PortId(0),
            first_dst: y,
            first_port: PortId(0),
            second_dst: y,
            second_port: PortId(1),
        }
    );
    assert!(err.to_string().contains("connected twice"));
}

#[test]
fn unknown_ids_are_errors() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let x = b.add(recorder("x", &log));
    b.connect((x, PortId(0)), (ComponentId(7), PortId(0)));
    assert!(matches!(
        b.build(),
        Err(EngineError::UnknownComponent {
            id: ComponentId(7),
            count: 1,
            ..
        })
    ));

    let mut b = EngineBuilder::new();
    b.add(recorder("x", &log));
    b.connect((ComponentId(3), PortId(0)), (x, PortId(0)));
    assert!(matches!(
        b.build(),
        Err(EngineError::UnknownComponent {
            id: ComponentId(3),
            ..
        })
    ));

    let mut b = EngineBuilder::new();
    let x = b.add(recorder("x", &log));
    let mut e = b.build().unwrap();
    assert!(matches!(
        e.inject(Ps(0), ComponentId(1), PortId(0), 0),
        Err(EngineError::UnknownComponent { .. })
    ));
    e.inject(Ps(50), x, PortId(0), 0).unwrap();
    e.run();
    assert_eq!(
        e.inject(Ps(49), x, PortId(0), 0),
        Err(EngineError::InjectInPast {
            at: Ps(49),
            now: Ps(50)
        })
    );
    // Injecting at the current time is fine.
    e.inject(Ps(50), x, PortId(0), 0).unwrap();
}

#[test]
fn identical_runs_give_identical_traces() {
    let traces: Vec<Vec<Rec>> = (0..2)
        .map(|_| {
            let log = new_log();
            let mut e = ring(16, 7, &log);
            let stats = e.run();
            assert_eq!(stats.events, 16 * 501);
            let t = log.borrow().clone();
            t
        })
        .collect();
    assert_eq!(traces[0], traces[1]);
}

#[test]
fn clock_domains_align_to_exact_edges() {
    // 666 MHz: period 1501.5015 ps, edges rounded up to whole ps.
    let clk = Clock::new(Hz(666_000_000));
    let log = new_log();
    let mut b = EngineBuilder::new();
    let rec = b.add(recorder("rec", &log));
    let src = b.add(scripted("src", &log, move |_, msg, ctx| {
        ctx.send_after_cycles(PortId(0), msg, &clk, Cycles(2));
    }));
    b.connect((src, PortId(0)), (rec, PortId(0)));
    let mut e = b.build().unwrap();
    e.inject(Ps(0), src, PortId(0), 1).unwrap();
    // Mid-cycle start: work begins at the next edge (1502), 2 cycles later.
    e.inject(Ps(1000), src, PortId(0), 2).unwrap();
    // Exactly on an edge: counts from that edge.
    e.inject(Ps(1502), src, PortId(0), 3).unwrap();
    e.run();
    let arrivals: Vec<(u64, u32)> = log
        .borrow()
        .iter()
        .filter(|r| r.1 == rec.0)
        .map(|r| (r.0, r.3))
        .collect();
    assert_eq!(arrivals, vec![(3004, 1), (4505, 2), (4505, 3)]);

    // A self-timed chain of 1-cycle steps lands on exact edges with no
    // accumulated rounding: 1000 cycles = 1_501_501.5 ps -> 1_501_502 ps
    // (adding a rounded 1502 ps period each step would give 1_502_000).
    log.borrow_mut().clear();
    let mut b = EngineBuilder::new();
    let src2 = b.add(scripted("chain", &log, move |_, msg, ctx| {
        if msg > 0 {
            ctx.wake_self_after_cycles(PortId(0), msg - 1, &clk, Cycles(1));
        }
    }));
    let mut e = b.build().unwrap();
    e.inject(Ps(0), src2, PortId(0), 1000).unwrap();
    let s = e.run();
    assert_eq!(s.events, 1001);
    assert_eq!(s.sim_time, Ps(1_501_502));
    assert_eq!(s.sim_time, clk.to_ps(Cycles(1000)));
    // Every event sat on an edge.
    assert!(log
        .borrow()
        .iter()
        .all(|r| clk.next_edge(Ps(r.0)) == Ps(r.0)));
}

#[test]
fn clock_edge_helper_matches_units() {
    let clk = Clock::new(Hz(666_000_000));
    let log = new_log();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    let mut b = EngineBuilder::new();
    let c = b.add(scripted("c", &log, move |_, _, ctx| {
        s2.borrow_mut().push((
            ctx.clock_edge(&clk, Cycles(0)),
            ctx.clock_edge(&clk, Cycles(2)),
        ));
    }));
    let mut e = b.build().unwrap();
    for t in [0, 1, 1502, 1503] {
        e.inject(Ps(t), c, PortId(0), 0).unwrap();
    }
    e.run();
    assert_eq!(
        *seen.borrow(),
        vec![
            (Ps(0), Ps(3004)),
            (Ps(1502), Ps(4505)),
            (Ps(1502), Ps(4505)),
            (Ps(3004), Ps(6007)),
        ]
    );
}

#[test]
fn stop_returns_early_and_leaves_the_rest_queued() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let r = b.add(scripted("r", &log, |_, msg, ctx| {
        if msg == 3 {
            ctx.stop();
        }
    }));
    let mut e = b.build().unwrap();
    for m in 1..=5u32 {
        e.inject(Ps(m as u64 * 10), r, PortId(0), m).unwrap();
    }
    let s = e.run_until(Ps(1000));
    assert_eq!(
        (s.events, s.reason, s.sim_time),
        (3, StopReason::Stopped, Ps(30))
    );
    assert_eq!(e.pending_events(), 2);
    let s = e.run();
    assert_eq!(
        (s.events, s.reason, s.sim_time),
        (2, StopReason::QueueEmpty, Ps(50))
    );
}

struct Counter {
    seen: u64,
}
impl Component<u32> for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn handle(&mut self, _: PortId, msg: u32, _: &mut Ctx<'_, u32>) {
        self.seen += msg as u64;
    }
}

#[test]
fn components_are_reachable_by_downcast() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let c = b.add(Box::new(Counter { seen: 0 }));
    let r = b.add(recorder("r", &log));
    let mut e = b.build().unwrap();
    e.component_mut::<Counter>(c).unwrap().seen = 100;
    e.inject(Ps(1), c, PortId(0), 5).unwrap();
    e.inject(Ps(2), c, PortId(0), 7).unwrap();
    let s = e.run();
    assert_eq!(s.events, 2);
    assert_eq!(e.component::<Counter>(c).unwrap().seen, 112);
    assert!(e.component::<Counter>(r).is_none());
    assert!(e.component::<Scripted>(r).is_some());
    assert!(e.component::<Counter>(ComponentId(9)).is_none());
    assert!(e.component_mut::<Scripted>(c).is_none());
}

#[test]
#[should_panic(expected = "sent on out port 4 at 5ps, but that port is not connected")]
fn sending_on_an_unwired_port_panics() {
    let log = new_log();
    let mut b = EngineBuilder::new();
    let x = b.add(scripted("x", &log, |_, _, ctx| {
        assert!(!ctx.is_connected(PortId(4)));
        ctx.send(PortId(4), 0, Ps(1));
    }));
    let mut e = b.build().unwrap();
    e.inject(Ps(5), x, PortId(0), 0).unwrap();
    e.run();
}

#[test]
fn run_stats_report_host_figures() {
    let log = new_log();
    let mut e = ring(4, 100, &log);
    let s = e.run();
    assert_eq!(s.events, 4 * 501);
    assert_eq!(s.sim_time, e.now());
    assert!(s.host_seconds >= 0.0);
    if s.host_seconds > 0.0 {
        let eps = s.events as f64 / s.host_seconds;
        assert!((s.events_per_host_second - eps).abs() <= 1e-6 * eps);
    }
    assert!(s.to_string().contains("2004 events"));
}
