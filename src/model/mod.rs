//! Models: the official parameter layout (spec), the tensors on the GPU (params) and the
//! computation graph built from them (network).
pub mod network;
pub mod params;
pub mod spec;
pub use params::Params;
pub use spec::{ModelKind, ModelSpec};
