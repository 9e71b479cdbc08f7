//! Deployment: a trained RBNN in 1-bit form and the engine that runs it.
//!
//! - `model`: the packed model file (safetensors, "rbnn-packed"): sign bits of w3 packed 32
//!   input channels per u32, alpha, BatchNorms, float stem and classifier, and metadata (model,
//!   input shape, normalisation, class names).
//! - `export`: checkpoint (or `Params`) -> packed model, with sign(w3) computed by the training
//!   code's own weight-side forward.
//! - `kernels`: the engine's kernels (shaders/infer_binconv.wgsl, shaders/infer_ops.wgsl) and
//!   their CPU references.
//! - `engine`: the packed model on the GPU; a `Plan` per batch size (one pass, one submit).
//! - `eval`: `rbnn eval` of a packed model: the test split scored by the engine.
//! - `predict`: picture files -> normalised inputs -> top-k classes.
//! - `bench`: `rbnn bench infer`, packed engine against the float evaluation path.
//!
//! ```text
//! let packed = export::export_params(&gpu, &params, meta)?;   // or `rbnn export`
//! packed.save(Path::new("model.safetensors"))?;
//! let mut engine = Engine::load(&gpu, Path::new("model.safetensors"))?;
//! let logits = engine.run(&gpu, &images, [n, c, h, w])?;       // any n
//! ```

pub mod bench;
pub mod engine;
pub mod eval;
pub mod export;
pub mod kernels;
pub mod model;
pub mod predict;

pub use engine::{Engine, Plan};
pub use model::{ModelMeta, PackedModel};
