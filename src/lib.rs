//! rbnn: Rotated Binary Neural Networks (Lin et al., NeurIPS 2020) trained and run through wgpu.
//!
//! Data flows top to bottom: `data` (datasets, batches) -> `gpu` (runtime) -> `ops` (kernels with
//! CPU references) -> `rbnn` (the binary conv layer and rotation) -> `model` -> `train`;
//! `distributed` is the ranks of a data-parallel job (MPI) that `train` sums gradients over.

pub mod bench;
pub mod data;
pub mod distributed;
pub mod gpu;
pub mod infer;
pub mod model;
pub mod ops;
pub mod rbnn;
pub mod rng;
pub mod train;
