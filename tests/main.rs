//! Integration tests, one module per topic.

mod adapter;
mod adapter_export;
mod cli;
mod common;
mod descriptions;
mod functional;
mod functional_weights;
mod layer;
mod minilm_assets;
mod report_task;
mod sweep;
mod task_e2e;
mod task_math;
mod task_text;
mod trace;
mod workload;
