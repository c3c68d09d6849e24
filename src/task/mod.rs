//! Text classification on a real model and real labelled data (issue 5):
//! tokenisation, the labelled sentence sets and their fixed split, the
//! embedding lookup that feeds the graph, pooling, and the task head.

pub mod data;
pub mod embed;
pub mod logreg;
pub mod study;
pub mod tokenize;

pub use data::TaskError;
pub use study::{task_study, LoraMode, TaskOptions, TaskReport};
