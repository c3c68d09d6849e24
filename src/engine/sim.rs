//! Building the wiring and running the event loop.

use super::queue::Scheduler;
use super::{
    Component, ComponentId, Ctx, EngineError, PortId, Priority, Route, RunStats, StopReason,
    DEFAULT_PRIORITY,
};
use crate::units::Ps;
use std::time::Instant;

/// Collects components and their connections, then validates them into an
/// [`Engine`].
pub struct EngineBuilder<M> {
    components: Vec<Box<dyn Component<M>>>,
    /// (source, out port, destination, in port), in the order connected.
    links: Vec<(ComponentId, PortId, ComponentId, PortId)>,
}

impl<M: 'static> Default for EngineBuilder<M> {
    fn default() -> Self {
        Self::new()
    }
}

// `M: 'static` because components are `Any` (for downcasting), which makes
// `dyn Component<M>` usable only for `'static` message types.
impl<M: 'static> EngineBuilder<M> {
    pub fn new() -> Self {
        EngineBuilder {
            components: Vec::new(),
            links: Vec::new(),
        }
    }

    /// Adds a component; ids are handed out in order from 0.
    pub fn add(&mut self, component: Box<dyn Component<M>>) -> ComponentId {
        let id = u32::try_from(self.components.len()).expect("more than u32::MAX components");
        self.components.push(component);
        ComponentId(id)
    }

    /// Connects output port `from.1` of `from.0` to input port `to.1` of
    /// `to.0`. Checked in [`EngineBuilder::build`]: an output port leads to
    /// exactly one input, while an input may be fed by many outputs (fan-in),
    /// and a component may be wired to itself.
    pub fn connect(&mut self, from: (ComponentId, PortId), to: (ComponentId, PortId)) -> &mut Self {
        self.links.push((from.0, from.1, to.0, to.1));
        self
    }

    /// Validates the wiring. Reports the first problem in connection order.
    pub fn build(self) -> Result<Engine<M>, EngineError> {
        let count = self.components.len();
        let check = |id: ComponentId, context| {
            if id.index() < count {
                Ok(())
            } else {
                Err(EngineError::UnknownComponent { id, count, context })
            }
        };
        let names: Vec<Box<str>> = self.components.iter().map(|c| c.name().into()).collect();
        let mut routes: Vec<Vec<Option<Route>>> = vec![Vec::new(); count];
        for &(src, out, dst, inp) in &self.links {
            check(src, "connect source")?;
            check(dst, "connect destination")?;
            let table = &mut routes[src.index()];
            let slot = out.0 as usize;
            if table.len() <= slot {
                table.resize(slot + 1, None);
            }
            if let Some(first) = table[slot] {
                return Err(EngineError::PortConnectedTwice {
                    id: src,
                    name: names[src.index()].to_string(),
                    port: out,
                    first_dst: ComponentId(first.dst),
                    first_port: first.port,
                    second_dst: dst,
                    second_port: inp,
                });
            }
            table[slot] = Some(Route {
                dst: dst.0,
                port: inp,
            });
        }
        let slots = self
            .components
            .into_iter()
            .zip(routes)
            .map(|(component, r)| Slot {
                component,
                routes: r.into_boxed_slice(),
            })
            .collect();
        Ok(Engine {
            slots,
            names,
            sched: Scheduler::new(),
            now: Ps::ZERO,
            total_events: 0,
        })
    }
}

/// A component and its out-port table, side by side so that running an
/// event touches one array element.
struct Slot<M> {
    component: Box<dyn Component<M>>,
    routes: Box<[Option<Route>]>,
}

/// A built simulation: components, wiring, the event queue and the clock.
pub struct Engine<M> {
    slots: Vec<Slot<M>>,
    names: Vec<Box<str>>,
    sched: Scheduler<M>,
    now: Ps,
    total_events: u64,
}

impl<M: 'static> Engine<M> {
    /// Schedules `msg` to input `port` of `target` at absolute time `at`, at
    /// the default priority.
    pub fn inject(
        &mut self,
        at: Ps,
        target: ComponentId,
        port: PortId,
        msg: M,
    ) -> Result<(), EngineError> {
        self.inject_with_priority(at, target, port, msg, DEFAULT_PRIORITY)
    }

    /// As [`Engine::inject`], with an explicit priority.
    pub fn inject_with_priority(
        &mut self,
        at: Ps,
        target: ComponentId,
        port: PortId,
        msg: M,
        priority: Priority,
    ) -> Result<(), EngineError> {
        if target.index() >= self.slots.len() {
            return Err(EngineError::UnknownComponent {
                id: target,
                count: self.slots.len(),
                context: "inject",
            });
        }
        if at < self.now {
            return Err(EngineError::InjectInPast { at, now: self.now });
        }
        self.sched.push(at, priority, target.0, port, msg);
        Ok(())
    }

    /// Runs until no events are left or a component calls [`Ctx::stop`].
    /// Afterwards [`Engine::now`] is the time of the last event processed.
    pub fn run(&mut self) -> RunStats {
        self.run_inner(Ps(u64::MAX), false)
    }

    /// Runs every event due at or before `until`, unless a component stops the
    /// run first. Later events stay queued. Afterwards [`Engine::now`] is
    /// `until` (the span up to it has been simulated, even if nothing
    /// happened), or the stopping event's time if stopped.
    pub fn run_until(&mut self, until: Ps) -> RunStats {
        self.run_inner(until, true)
    }

    fn run_inner(&mut self, until: Ps, advance_to_limit: bool) -> RunStats {
        let start = Instant::now();
        let mut events: u64 = 0;
        self.sched.stop_requested = false;
        let reason = loop {
            let Some(ev) = self.sched.pop_due(until) else {
                break if self.sched.len() == 0 {
                    StopReason::QueueEmpty
                } else {
                    StopReason::TimeLimit
                };
            };
            let now = ev.time();
            debug_assert!(now >= self.now, "time went backwards");
            self.now = now;
            // A destination index is valid by construction: `inject` checks
            // it and routes were checked at build time.
            let slot = &mut self.slots[ev.dst as usize];
            let mut ctx = Ctx {
                now,
                me: ev.dst,
                routes: &slot.routes,
                sched: &mut self.sched,
                names: &self.names,
            };
            slot.component.handle(ev.port, ev.msg, &mut ctx);
            events += 1;
            if self.sched.stop_requested {
                break StopReason::Stopped;
            }
        };
        if advance_to_limit && reason != StopReason::Stopped && until > self.now {
            self.now = until;
        }
        self.total_events += events;
        let host_seconds = start.elapsed().as_secs_f64();
        RunStats {
            events,
            host_seconds,
            events_per_host_second: if host_seconds > 0.0 {
                events as f64 / host_seconds
            } else {
                0.0
            },
            sim_time: self.now,
            reason,
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Ps {
        self.now
    }

    /// Events still queued.
    pub fn pending_events(&self) -> usize {
        self.sched.len()
    }

    /// The time of the earliest queued event.
    pub fn next_event_time(&self) -> Option<Ps> {
        self.sched.next_time()
    }

    /// Events processed over all runs of this engine.
    pub fn total_events(&self) -> u64 {
        self.total_events
    }

    pub fn component_count(&self) -> usize {
        self.slots.len()
    }

    /// The name a component reported when the engine was built.
    pub fn name(&self, id: ComponentId) -> Option<&str> {
        self.names.get(id.index()).map(|n| &**n)
    }

    /// The component `id` as its concrete type `T`; `None` if the id is
    /// unknown or the component is not a `T`.
    pub fn component<T: 'static>(&self, id: ComponentId) -> Option<&T> {
        let c: &dyn Component<M> = &*self.slots.get(id.index())?.component;
        c.as_any().downcast_ref::<T>()
    }

    /// Mutable access to component `id` as its concrete type `T`.
    pub fn component_mut<T: 'static>(&mut self, id: ComponentId) -> Option<&mut T> {
        let c: &mut dyn Component<M> = &mut *self.slots.get_mut(id.index())?.component;
        c.as_any_mut().downcast_mut::<T>()
    }
}
