//! Integration tests, one module per topic.

mod adapter;
mod cli;
mod descriptions;
mod functional;
mod functional_weights;
mod layer;
mod sweep;
mod trace;
mod workload;
