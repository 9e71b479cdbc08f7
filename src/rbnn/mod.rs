//! The RBNN binary convolution (docs/numerics.md sections 1 to 5) on the GPU.
//!
//! - `layer`: `BinaryConv2d`, the layer's parameters, scratch, forward and backward dispatches.
//! - `standardize`, `rotate`, `binconv`: host wrappers of shaders/standardize.wgsl,
//!   shaders/rotate.wgsl and shaders/binconv.wgsl (one per kernel family).
//! - `rotation`: the per-epoch bi-rotation update of R1 and R2, batched over a model's layers,
//!   and its per-layer diagnostics (shaders/rotation.wgsl + SVDs on the host, `procrustes`).
//! - `schedule`: t and k of ApproxSign per epoch.
//!
//! Every module's f64 reference, which the tests compare the GPU against, is its `cpu`
//! submodule, as in `ops`: `standardize::cpu`, `rotate::cpu`, `binconv::cpu`, `rotation::cpu`,
//! `schedule::cpu` (sign and ApproxSign), and `layer::cpu`, the whole layer built from them.
//!
//! Use (a model builds one layer per binary conv, over views of its arenas):
//! ```text
//! let layer = BinaryConv2d::new(&gpu, shape, a32, BinaryConvTensors { weight, alpha, .. })?;
//! let rotation = RotationUpdate::new(&gpu, &[&layer, ..])?;      // once per model
//! // every step, in the step's one compute pass (t, k from ApproxSignSchedule::at(epoch)):
//! layer.record_forward(&mut pass);  ...  layer.record_backward(&mut pass, t, k);
//! // at the first batch of a rotation epoch, before that step is submitted:
//! let diagnostics = rotation.update(&gpu)?;
//! ```
//!
//! sign(0) = 0 everywhere, as torch.sign: the packed convolution carries a "nonzero" bit plane
//! beside the sign plane (see `binconv`), so an exact zero contributes 0 in the 1-bit forward just
//! as in the float backward, and padded taps and channel tails are zeros of the same kind.

pub mod binconv;
pub mod layer;
pub mod procrustes;
pub mod rotate;
pub mod rotation;
pub mod schedule;
pub mod standardize;

pub use layer::{initial_alpha, BinaryConv2d, BinaryConvTensors};
pub use rotate::rotation_dims;
pub use rotation::{LayerDiagnostics, RotationUpdate};
pub use schedule::ApproxSignSchedule;
