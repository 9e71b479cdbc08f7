//! Training infrastructure that is not kernels: the run configuration and the recipes that fill
//! it, the optimizer (SGD or Adam, with parameter groups), the learning-rate schedule, the
//! data-parallel hook (micro-batches, the sum over ranks), the planned GPU memory, checkpoints
//! (safetensors, written atomically), run directories (one lock, no run overwritten unasked), the
//! per-epoch metrics log and the plot of the training curves drawn from it.

pub mod checkpoint;
pub mod choices;
pub mod config;
pub mod data_parallel;
pub mod lr;
pub mod memory;
pub mod metrics;
pub mod optimizer;
pub mod plot;
pub mod recipe;
pub mod run_dir;
pub mod step;
pub mod trainer;
