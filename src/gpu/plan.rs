//! Memory planning: a `Gpu::planner` builds whatever a real Gpu builds (the same code paths,
//! kernel choices and limit checks) but allocates nothing: every tensor it makes is counted and
//! backed by one 4-byte stand-in buffer, its dispatches get no bind group (they are never
//! recorded), and writes are dropped. So the bytes a network would take at any batch, on this
//! adapter or under other limits, come from the code that allocates them.

use super::{Gpu, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A planner's count of the bytes its tensors would take, and the buffer standing in for them.
#[derive(Clone)]
pub(crate) struct Tally {
    bytes: Arc<AtomicU64>,
    stand_in: wgpu::Buffer,
}

impl Tally {
    pub(super) fn tensor(&self, label: &str, shape: &[usize], bytes: u64) -> Tensor {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Tensor {
            buffer: self.stand_in.clone(),
            offset: 0,
            shape: shape.to_vec(),
            label: label.to_string(),
        }
    }
}

impl Gpu {
    /// A planner on this device: this adapter's kernels and choices with `limits` (this
    /// adapter's, or a larger GPU's to ask whether a batch would fit there), and, with
    /// `hardware`, the kernel choices of a hardware adapter (the tiled kernels instead of the
    /// software adapters' direct ones; still no cooperative matrices unless this adapter has
    /// them). Its pipelines are this Gpu's (shared cache).
    pub fn planner(&self, limits: wgpu::Limits, hardware: bool) -> Gpu {
        let mut info = self.info.clone();
        if hardware && info.device_type == wgpu::DeviceType::Cpu {
            info.device_type = wgpu::DeviceType::DiscreteGpu;
        }
        let stand_in = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("planned tensor (stand-in)"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Gpu {
            adapter: self.adapter.clone(),
            device: self.device.clone(),
            queue: self.queue.clone(),
            info,
            limits,
            features: self.features,
            cooperative_matrix: self.cooperative_matrix.clone(),
            kernels: self.kernels.clone(),
            layouts: self.layouts.clone(),
            errors: self.errors.clone(),
            plan: Some(Tally {
                bytes: Arc::default(),
                stand_in,
            }),
        }
    }

    /// On a planner, the bytes of every tensor it has made so far; None on a real Gpu.
    pub fn planned_bytes(&self) -> Option<u64> {
        self.plan.as_ref().map(|p| p.bytes.load(Ordering::Relaxed))
    }
}
