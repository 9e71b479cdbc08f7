//! Models: the official parameter layout (spec) and the GPU network built from it.
pub mod spec;
pub use spec::{ModelKind, ModelSpec};
