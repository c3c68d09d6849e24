//! The discrete-event kernel. It owns simulated time (integer picoseconds),
//! the pending-event queue, the wiring between components and the run loop;
//! it knows nothing of hardware. Hardware models become [`Component`]s in the
//! timing layer.
//!
//! Events are ordered by (time, priority, insertion sequence), with lower
//! priority values first, so a run is fully deterministic: the same
//! components, wiring and injected events give the same sequence of handler
//! calls every time. Time never goes backwards: delays are unsigned and
//! injecting into the past is an error.
//!
//! Usage: add components to an [`EngineBuilder`], connect output ports to
//! input ports, [`EngineBuilder::build`], [`Engine::inject`] the initial
//! events, then [`Engine::run`] or [`Engine::run_until`]. Components schedule
//! further events through their [`Ctx`], in picoseconds or in cycles of a
//! [`crate::units::Clock`].

mod component;
mod queue;
mod sim;
#[cfg(test)]
mod tests;

pub use component::{AsAny, Component, Ctx};
pub use sim::{Engine, EngineBuilder};

use crate::units::Ps;
use serde::Serialize;
use std::fmt;

/// Identifies a component within one engine (its index in insertion order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ComponentId(pub u32);

impl ComponentId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A port number of a component, input or output depending on context.
/// Each component numbers its own inputs and outputs from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct PortId(pub u16);

/// Event priority among events at the same time: lower runs first.
pub type Priority = u8;

/// The priority used when none is given: the middle of the range, so that
/// components can place events both before and after ordinary ones.
pub const DEFAULT_PRIORITY: Priority = 128;

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where an output port leads: an input port of some component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) dst: u32,
    pub(crate) port: PortId,
}

/// Errors in building or seeding an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("{context}: unknown component id {id} (the engine has {count} components)")]
    UnknownComponent {
        id: ComponentId,
        count: usize,
        context: &'static str,
    },
    #[error(
        "out port {port} of component `{name}` ({id}) is connected twice: \
         to {first_dst} port {first_port} and to {second_dst} port {second_port}"
    )]
    PortConnectedTwice {
        id: ComponentId,
        name: String,
        port: PortId,
        first_dst: ComponentId,
        first_port: PortId,
        second_dst: ComponentId,
        second_port: PortId,
    },
    #[error("cannot inject an event at {at}: simulated time is already {now}")]
    InjectInPast { at: Ps, now: Ps },
}

/// Why a run returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopReason {
    /// No events were left.
    QueueEmpty,
    /// The next event lies after the `run_until` limit.
    TimeLimit,
    /// A component called [`Ctx::stop`].
    Stopped,
}

/// Host-side statistics of one `run`/`run_until` call, in the spirit of
/// gem5's host statistics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RunStats {
    /// Events processed (handler calls) in this call.
    pub events: u64,
    /// Wall-clock seconds spent in this call (host time, not simulated time).
    pub host_seconds: f64,
    /// `events / host_seconds`, or 0 when no host time was measurable.
    pub events_per_host_second: f64,
    /// Simulated time when the call returned.
    pub sim_time: Ps,
    pub reason: StopReason,
}

impl fmt::Display for RunStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events in {:.3} s host time ({:.2} M events/s); simulated time {} ({:?})",
            self.events,
            self.host_seconds,
            self.events_per_host_second / 1e6,
            self.sim_time,
            self.reason
        )
    }
}
