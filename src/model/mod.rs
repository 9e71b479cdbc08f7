//! Models: each described once (arch: the description language; zoo: one file per model), the
//! official parameter layout derived from the description (spec), the tensors on the GPU
//! (params) and the computation graph built from them (network).
pub mod arch;
pub mod network;
pub mod params;
pub mod spec;
pub mod zoo;
pub use params::Params;
pub use spec::ModelSpec;
pub use zoo::ModelKind;
