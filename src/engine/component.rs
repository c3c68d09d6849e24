//! What a component is to the engine, and the context it acts through while
//! handling an event.

use super::queue::Scheduler;
use super::{ComponentId, PortId, Priority, Route, DEFAULT_PRIORITY};
use crate::units::{Clock, Cycles, Ps};
use std::any::Any;

/// Lets the engine downcast a `dyn Component<M>` back to its concrete type.
///
/// Blanket-implemented for every `'static` type: component authors never
/// implement it. It exists because upcasting `&dyn Component<M>` to
/// `&dyn Any` directly needs Rust 1.86, above the crate's declared MSRV.
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A simulated component: it reacts to messages arriving on its input ports
/// and schedules new messages through its [`Ctx`]. It knows only its own
/// state and its port numbers; where its output ports lead is the wiring's
/// business ([`super::EngineBuilder::connect`]).
pub trait Component<M>: AsAny {
    /// A human-readable name for error messages and reports. Read once, when
    /// the engine is built.
    fn name(&self) -> &str;

    /// Handles `msg` arriving on input port `port` at time `ctx.now()`.
    fn handle(&mut self, port: PortId, msg: M, ctx: &mut Ctx<'_, M>);
}

/// The handle a component uses, during [`Component::handle`], to read the
/// time and to schedule events.
///
/// Delays are relative to [`Ctx::now`]. Events sent with the same time run
/// in priority order (lower first), then in the order they were scheduled.
pub struct Ctx<'a, M> {
    pub(crate) now: Ps,
    pub(crate) me: u32,
    /// The out-port table of the component being run.
    pub(crate) routes: &'a [Option<Route>],
    pub(crate) sched: &'a mut Scheduler<M>,
    /// All component names, used only to word panic messages.
    pub(crate) names: &'a [Box<str>],
}

impl<M> Ctx<'_, M> {
    /// The current simulated time.
    #[inline]
    pub fn now(&self) -> Ps {
        self.now
    }

    /// The id of the component being run.
    #[inline]
    pub fn self_id(&self) -> ComponentId {
        ComponentId(self.me)
    }

    /// Whether output port `out_port` of this component is wired. Sending on
    /// an unwired port panics, so components with optional outputs ask first.
    #[inline]
    pub fn is_connected(&self, out_port: PortId) -> bool {
        matches!(self.routes.get(out_port.0 as usize), Some(Some(_)))
    }

    /// Sends `msg` on output port `out_port`, to arrive `delay` from now, at
    /// the default priority.
    ///
    /// # Panics
    /// If `out_port` is not wired. That is a bug in whoever built the wiring
    /// or in the component, never a property of the simulated input, and a
    /// dropped message would silently corrupt the timeline; a panic naming the
    /// component, port and time is the most useful response. Use
    /// [`Ctx::is_connected`] for ports that may legitimately be left open.
    #[inline]
    #[track_caller]
    pub fn send(&mut self, out_port: PortId, msg: M, delay: Ps) {
        self.send_with_priority(out_port, msg, delay, DEFAULT_PRIORITY);
    }

    /// As [`Ctx::send`], with an explicit priority (lower runs first among
    /// events at the same time).
    #[inline]
    #[track_caller]
    pub fn send_with_priority(&mut self, out_port: PortId, msg: M, delay: Ps, priority: Priority) {
        let at = self.after(delay);
        self.send_at(out_port, msg, at, priority);
    }

    /// Sends `msg` on `out_port` to arrive `cycles` edges of `clock` after
    /// the next edge at or after now (see [`Ctx::clock_edge`]).
    #[inline]
    #[track_caller]
    pub fn send_after_cycles(&mut self, out_port: PortId, msg: M, clock: &Clock, cycles: Cycles) {
        let at = self.clock_edge(clock, cycles);
        self.send_at(out_port, msg, at, DEFAULT_PRIORITY);
    }

    /// Schedules `msg` to this component's own input port `in_port`, `delay`
    /// from now, at the default priority. Needs no wiring.
    #[inline]
    #[track_caller]
    pub fn wake_self(&mut self, in_port: PortId, msg: M, delay: Ps) {
        self.wake_self_with_priority(in_port, msg, delay, DEFAULT_PRIORITY);
    }

    /// As [`Ctx::wake_self`], with an explicit priority.
    #[inline]
    #[track_caller]
    pub fn wake_self_with_priority(
        &mut self,
        in_port: PortId,
        msg: M,
        delay: Ps,
        priority: Priority,
    ) {
        let at = self.after(delay);
        self.sched.push(at, priority, self.me, in_port, msg);
    }

    /// Schedules `msg` to this component's own `in_port`, `cycles` edges of
    /// `clock` after the next edge at or after now.
    #[inline]
    #[track_caller]
    pub fn wake_self_after_cycles(
        &mut self,
        in_port: PortId,
        msg: M,
        clock: &Clock,
        cycles: Cycles,
    ) {
        let at = self.clock_edge(clock, cycles);
        self.sched.push(at, DEFAULT_PRIORITY, self.me, in_port, msg);
    }

    /// The absolute time `cycles` edges of `clock` after the first edge at or
    /// after now (gem5's `clockEdge`): work started mid-cycle begins at the
    /// next edge, and `Cycles(0)` merely aligns to it. Edges are exact
    /// multiples of the true period rounded up to a whole picosecond, so
    /// rounding never accumulates (666 MHz: edges at 0, 1502, 3004, ... ps).
    #[inline]
    pub fn clock_edge(&self, clock: &Clock, cycles: Cycles) -> Ps {
        clock.to_ps(clock.cycles_ceil(self.now) + cycles)
    }

    /// Asks the engine to return from `run`/`run_until` once this handler
    /// finishes. Pending events stay queued; a later run resumes them.
    #[inline]
    pub fn stop(&mut self) {
        self.sched.stop_requested = true;
    }

    #[inline]
    #[track_caller]
    fn after(&self, delay: Ps) -> Ps {
        match self.now.0.checked_add(delay.0) {
            Some(t) => Ps(t),
            None => time_overflow(self.now, delay),
        }
    }

    #[inline]
    #[track_caller]
    fn send_at(&mut self, out_port: PortId, msg: M, at: Ps, priority: Priority) {
        match self.routes.get(out_port.0 as usize) {
            Some(Some(r)) => self.sched.push(at, priority, r.dst, r.port, msg),
            _ => self.unwired(out_port),
        }
    }

    #[cold]
    #[inline(never)]
    #[track_caller]
    fn unwired(&self, out_port: PortId) -> ! {
        panic!(
            "component `{}` ({}) sent on out port {} at {}, but that port is not \
             connected (wire it with EngineBuilder::connect, or check Ctx::is_connected)",
            self.names[self.me as usize],
            ComponentId(self.me),
            out_port,
            self.now
        )
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn time_overflow(now: Ps, delay: Ps) -> ! {
    panic!("simulated time overflows u64 picoseconds: {now} + {delay}")
}
