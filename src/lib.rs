//! rbnn: Rotated Binary Neural Networks (Lin et al., NeurIPS 2020) trained and run through wgpu.
//!
//! Data flows top to bottom: `gpu` (runtime) -> `ops` (kernels with CPU references) -> `rbnn`
//! (the binary conv layer and rotation) -> `model` -> `train` -> `infer`.

pub mod bench;
pub mod gpu;
pub mod ops;
pub mod rng;
