//! Integration tests, one module per topic.

mod adapter;
mod cli;
mod descriptions;
mod layer;
mod sweep;
mod trace;
mod workload;
