//! The pending-event queue: a binary min-heap of events, each keyed by one
//! packed `u128` so that ordering an event is a single integer comparison.

use super::{PortId, Priority};
use crate::units::Ps;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Bits of the key given to the insertion sequence number. 2^56 events is
/// about 114 years at 20 M events/s, so the limit is never reached in practice.
const SEQ_BITS: u32 = 56;
const SEQ_LIMIT: u64 = 1 << SEQ_BITS;

/// Packs (time, priority, sequence) so that the natural order of the `u128`
/// is the event order: time in the high 64 bits, then the priority byte, then
/// the sequence number. Sequence numbers are unique, so keys are too and the
/// order is total: no two runs can differ in how they break a tie.
#[inline]
pub(crate) fn pack_key(time: Ps, priority: Priority, seq: u64) -> u128 {
    debug_assert!(seq < SEQ_LIMIT);
    ((time.0 as u128) << 64) | ((priority as u128) << SEQ_BITS) | seq as u128
}

#[inline]
pub(crate) fn key_time(key: u128) -> Ps {
    Ps((key >> 64) as u64)
}

/// One pending event. The message is stored inline: typical messages are a
/// few words, and an indirection through a side table would cost a cache
/// miss per event, more than moving a few extra bytes during heap sifts.
pub(crate) struct Event<M> {
    key: u128,
    pub(crate) dst: u32,
    pub(crate) port: PortId,
    pub(crate) msg: M,
}

impl<M> Event<M> {
    #[inline]
    pub(crate) fn time(&self) -> Ps {
        key_time(self.key)
    }
}

// Ordering looks only at the key, reversed, because `BinaryHeap` is a
// max-heap and we want the smallest key on top.
impl<M> PartialEq for Event<M> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<M> Eq for Event<M> {}
impl<M> PartialOrd for Event<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<M> Ord for Event<M> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

/// The queue plus the state a handler may change while it runs (the sequence
/// counter and the stop request). Kept in one struct so that [`super::Ctx`]
/// needs a single `&mut` to it.
pub(crate) struct Scheduler<M> {
    heap: BinaryHeap<Event<M>>,
    next_seq: u64,
    pub(crate) stop_requested: bool,
}

impl<M> Scheduler<M> {
    pub(crate) fn new() -> Self {
        Scheduler {
            heap: BinaryHeap::new(),
            next_seq: 0,
            stop_requested: false,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, time: Ps, priority: Priority, dst: u32, port: PortId, msg: M) {
        let seq = self.next_seq;
        if seq >= SEQ_LIMIT {
            seq_exhausted();
        }
        self.next_seq = seq + 1;
        self.heap.push(Event {
            key: pack_key(time, priority, seq),
            dst,
            port,
            msg,
        });
    }

    /// Removes and returns the earliest event if it is due at or before `until`.
    #[inline]
    pub(crate) fn pop_due(&mut self, until: Ps) -> Option<Event<M>> {
        if self.heap.peek()?.time() > until {
            return None;
        }
        self.heap.pop()
    }

    pub(crate) fn next_time(&self) -> Option<Ps> {
        self.heap.peek().map(Event::time)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cold]
#[inline(never)]
fn seq_exhausted() -> ! {
    panic!("event sequence numbers exhausted (2^56 events scheduled in one engine)")
}
