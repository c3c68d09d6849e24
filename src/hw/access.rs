//! The vocabulary shared by every TCDM master (RedMule, DMA, cores): what a
//! master asks of the banked memory, beat by beat.

/// One access of a master's port to the TCDM: `bytes` contiguous bytes
/// starting at byte address `addr` (relative to the TCDM base). A beat is
/// granted in one cycle when every bank it touches is free in that cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    pub addr: u64,
    pub bytes: u32,
}

/// A step of a master's activity. Its beats are issued in order, at most
/// the master's port count per cycle, a beat that loses arbitration retrying
/// the next cycle. The phase lasts `max(cycles to get all beats granted,
/// min_cycles) + tail_cycles` cycles; the next phase starts after it.
///
/// `min_cycles` is work that overlaps the accesses (e.g. RedMule's array
/// computing while it loads the next operands); `tail_cycles` is work that
/// follows them (e.g. a pipeline bubble, a DMA burst's setup).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Phase {
    pub beats: Vec<Beat>,
    pub min_cycles: u64,
    pub tail_cycles: u64,
}

impl Phase {
    /// Cycles this phase takes when no other master touches its banks and
    /// the master has one port: one beat per cycle.
    pub fn ideal_cycles(&self) -> u64 {
        (self.beats.len() as u64).max(self.min_cycles) + self.tail_cycles
    }
}
