//! The GPU runtime: adapter selection, tensors in storage buffers, kernels (pipelines with shared
//! explicit bind group layouts), dispatches recorded once and replayed every step, and timing.
//!
//! How a kernel is used (see `ops/` for many examples):
//! 1. `gpu.kernel("conv_gemm", "forward", &[("BM", 64.0)])` loads shaders/conv_gemm.wgsl
//!    (embedded by build.rs with its `// #include "common/..."` lines expanded, see
//!    `wgsl_include`), validates it with naga, and derives its bind group layout from the storage
//!    bindings the entry point uses (group 0, read-only or read-write as declared) and its
//!    `var<immediate>` size. Layouts are shared between kernels with the same signature;
//!    pipelines are cached.
//! 2. `gpu.dispatch(&kernel, &[&a, &b, &out], &immediates, workgroups)` creates the bind group once;
//!    the buffers go to the used bindings in increasing binding number.
//! 3. `dispatch.record(&mut pass)` puts it into a compute pass; a training step records all of its
//!    dispatches into one pass of one encoder and submits once.
//!
//! Per-dispatch scalars travel as immediates (`var<immediate>`), recorded with each dispatch, so
//! dispatches of one submit can see different values (queue.write_buffer could not do that).

mod context;
pub mod environment;
mod kernel;
mod plan;
pub mod select;
mod tensor;
mod timing;
pub mod wgsl_include;

pub use context::{AdapterSummary, Gpu, KernelVariant, KERNEL_VARIANT_ENV};
pub use kernel::{
    grid_1d, shader_source, shader_sources, validate_wgsl, Dispatch, Kernel, ShaderSource,
};
pub use tensor::{Readback, Tensor};
pub use timing::{breakdown, format_breakdown, GpuTimer, KernelShare, TimedDispatches};

/// Immediates are packed as little-endian 32-bit words; this builds them from mixed u32/f32.
#[derive(Default, Clone)]
pub struct Imm(pub Vec<u8>);

impl Imm {
    pub fn new() -> Self {
        Imm(Vec::with_capacity(64))
    }
    pub fn u(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f(mut self, v: f32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}
