//! Integration tests, one module per topic.

mod cli;
mod descriptions;
mod layer;
mod sweep;
mod trace;
mod workload;
