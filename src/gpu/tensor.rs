//! Tensors: a storage buffer of 32-bit elements (f32, or u32 for packed bits and counters) with a
//! shape. Allocated once per network and batch size; read back only outside the step loop.

use super::Gpu;
use anyhow::{anyhow, bail, Result};

/// A tensor owns its buffer, or is a view into an arena buffer (`offset` in bytes, aligned to the
/// adapter's min_storage_buffer_offset_alignment) so that many small tensors can share one buffer.
#[derive(Clone)]
pub struct Tensor {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub shape: Vec<usize>,
    pub label: String,
}

impl Tensor {
    /// Number of 32-bit elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn bytes(&self) -> u64 {
        (self.len() * 4) as u64
    }
    /// The same memory seen with another shape of the same element count.
    pub fn reshaped(&self, shape: &[usize]) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            self.len(),
            "reshape {}",
            self.label
        );
        Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        }
    }

    /// The binding covering exactly this tensor (at least 4 bytes, so empty tensors bind).
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.bytes().max(4)),
        })
    }
}

impl Gpu {
    /// A zero-filled tensor. Zero-sized tensors get one element so they can still be bound.
    pub fn tensor(&self, label: &str, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        if let Some(plan) = &self.plan {
            return plan.tensor(label, shape, (n.max(1) * 4) as u64);
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Tensor {
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            label: label.to_string(),
        }
    }

    /// One buffer holding several tensors (e.g. all parameters of a network, so that the optimizer
    /// is one dispatch over `whole`). Each view starts at an aligned offset; the gaps are zero and
    /// stay zero under SGD. Returns (whole, views in the order of `shapes`).
    pub fn arena(
        &self,
        label: &str,
        shapes: &[(String, Vec<usize>)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let align = (self.limits.min_storage_buffer_offset_alignment as u64).max(4);
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut end = 0u64;
        for (_, shape) in shapes {
            offsets.push(end);
            let bytes = (shape.iter().product::<usize>() * 4) as u64;
            end = (end + bytes.max(4)).div_ceil(align) * align;
        }
        let whole = self.try_tensor(label, &[(end / 4) as usize])?;
        let views = shapes
            .iter()
            .zip(offsets)
            .map(|((name, shape), offset)| Tensor {
                buffer: whole.buffer.clone(),
                offset,
                shape: shape.clone(),
                label: name.clone(),
            })
            .collect();
        Ok((whole, views))
    }

    /// Like `tensor`, but fails with the adapter limit named when it cannot be bound.
    pub fn try_tensor(&self, label: &str, shape: &[usize]) -> Result<Tensor> {
        let bytes = (shape.iter().product::<usize>() * 4) as u64;
        if bytes > self.max_binding_bytes() {
            bail!(
                "tensor {label} {shape:?} needs {} MiB, over the adapter's limit of {} MiB per \
                 storage binding (max_storage_buffer_binding_size / max_buffer_size); use a \
                 smaller batch size",
                bytes >> 20,
                self.max_binding_bytes() >> 20
            );
        }
        Ok(self.tensor(label, shape))
    }

    pub fn upload_f32(&self, label: &str, shape: &[usize], data: &[f32]) -> Tensor {
        let t = self.tensor(label, shape);
        self.write(&t, data);
        t
    }

    pub fn upload_u32(&self, label: &str, shape: &[usize], data: &[u32]) -> Tensor {
        let t = self.tensor(label, shape);
        self.write(&t, data);
        t
    }

    /// Overwrites a tensor's contents (takes effect before the next submit).
    pub fn write<T: bytemuck::Pod>(&self, t: &Tensor, data: &[T]) {
        if self.plan.is_some() {
            return; // a planner's tensors hold nothing
        }
        assert_eq!(
            std::mem::size_of_val(data) as u64,
            t.bytes(),
            "write {}: size mismatch",
            t.label
        );
        self.queue
            .write_buffer(&t.buffer, t.offset, bytemuck::cast_slice(data));
    }

    /// Blocking read of a whole tensor (staging buffer created here: never inside a step).
    pub fn read<T: bytemuck::Pod>(&self, t: &Tensor) -> Result<Vec<T>> {
        if self.plan.is_some() {
            bail!(
                "reading {}: a memory planner's tensors hold nothing",
                t.label
            );
        }
        let size = (t.len().max(1) * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        encoder.copy_buffer_to_buffer(&t.buffer, t.offset, &staging, 0, t.bytes().max(4).min(size));
        self.queue.submit([encoder.finish()]);
        let mut out = Vec::new();
        self.read_staging(&staging, t, &mut out)?;
        Ok(out)
    }

    /// Waits for the submitted work, maps `staging` (which a submitted copy of `t` fills) and
    /// copies `t.len()` elements into `out`, then unmaps it for the next copy.
    fn read_staging<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        t: &Tensor,
        out: &mut Vec<T>,
    ) -> Result<()> {
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| anyhow!("reading {}: map callback lost", t.label))?
            .map_err(|e| anyhow!("reading {}: {e}", t.label))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("reading {}: {e}", t.label))?;
            out.clear();
            out.extend_from_slice(&bytemuck::cast_slice::<u8, T>(&view)[..t.len()]);
        }
        // The view must be dropped before unmap.
        staging.unmap();
        Ok(())
    }

    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        self.read::<f32>(t)
    }

    pub fn read_u32(&self, t: &Tensor) -> Result<Vec<u32>> {
        self.read::<u32>(t)
    }

    /// Records a whole-tensor copy (same size) into `encoder`.
    pub fn copy(&self, encoder: &mut wgpu::CommandEncoder, src: &Tensor, dst: &Tensor) {
        assert_eq!(
            src.bytes(),
            dst.bytes(),
            "copy {} -> {}",
            src.label,
            dst.label
        );
        encoder.copy_buffer_to_buffer(
            &src.buffer,
            src.offset,
            &dst.buffer,
            dst.offset,
            src.bytes(),
        );
    }
}

/// Reads one f32 tensor back every step (the gradient arena of data-parallel training): the
/// staging buffer is created once, the copy into it is recorded into the step's own encoder, and
/// `read_into` waits for that submit and copies the values out.
pub struct Readback {
    tensor: Tensor,
    staging: wgpu::Buffer,
}

impl Readback {
    pub fn new(gpu: &Gpu, tensor: &Tensor) -> Readback {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("readback of {}", tensor.label)),
            size: tensor.bytes().max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Readback {
            tensor: tensor.clone(),
            staging,
        }
    }

    /// Records the copy of the tensor into the staging buffer (after the pass that writes it).
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_buffer(
            &self.tensor.buffer,
            self.tensor.offset,
            &self.staging,
            0,
            self.tensor.bytes(),
        );
    }

    /// Waits for the submit that holds `record`, and copies the values into `out`.
    pub fn read_into(&self, gpu: &Gpu, out: &mut Vec<f32>) -> Result<()> {
        gpu.read_staging(&self.staging, &self.tensor, out)
    }
}
