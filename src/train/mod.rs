//! Training infrastructure that is not kernels: the run configuration, the learning-rate
//! schedule, the planned GPU memory, checkpoints (safetensors, written atomically), run directories (one lock, no run
//! overwritten unasked), the per-epoch metrics log and the plot of the training curves drawn
//! from it.

pub mod checkpoint;
pub mod config;
pub mod data_parallel;
pub mod lr;
pub mod memory;
pub mod metrics;
pub mod plot;
pub mod run_dir;
pub mod step;
pub mod trainer;
