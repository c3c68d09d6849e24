//! Component models of the hardware: the AIMC tile, RedMule, the Snitch
//! cores (kernel cost models), the banked TCDM and the iDMA engine.
//!
//! Each model owns its parameter struct (deserialised from the architecture
//! description, units explicit) and its timing rules. Models know nothing of
//! the command line, of the dataflow graph or of the event engine: the
//! timing layer (`crate::timing`) wraps them into engine components.

pub mod access;
pub mod aimc;
pub mod dma;
pub mod redmule;
pub mod snitch;
pub mod tcdm;
