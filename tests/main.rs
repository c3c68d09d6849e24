//! Integration tests, one module per topic.

mod adapter;
mod cli;
mod common;
mod descriptions;
mod functional;
mod functional_weights;
mod layer;
mod minilm_assets;
mod sweep;
mod trace;
mod workload;
