//! aimcsim: a cycle-level simulator of hybrid analog in-memory computing
//! (AIMC) accelerators running transformer inference with LoRA adapters.
//!
//! The library's public face. Data flows down this list (see DESIGN.md):
//! descriptions ([`config`]) -> dataflow graph ([`graph`]) -> placement
//! ([`mapping`]) -> timing run ([`timing`], on the [`engine`] with the
//! component models of [`hw`]) -> [`report`].

pub mod adapter;
pub mod config;
pub mod engine;
pub mod fit;
pub mod functional;
pub mod graph;
pub mod hw;
pub mod mapping;
pub mod report;
pub mod sweep;
pub mod task;
pub mod timing;
pub mod units;
