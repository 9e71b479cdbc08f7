//! Kernels: one WGSL entry point, compiled once, with a bind group layout derived from the
//! shader itself and shared between kernels of the same signature.

use super::wgsl_include::{locate, LineRun};
use super::{Gpu, Tensor};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::sync::Arc;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/wgsl/shaders.rs"));
}

/// A kernel's WGSL as the GPU compiles it (includes expanded) and where its lines come from.
#[derive(Debug, Clone, Copy)]
pub struct ShaderSource {
    /// The kernel's name: the file stem (shaders/conv_gemm.wgsl -> "conv_gemm").
    pub name: &'static str,
    pub source: &'static str,
    /// (first expanded line, original file, its line) per run of lines from one file (see
    /// `wgsl_include`), so errors name the original file and line.
    pub lines: &'static [LineRun<&'static str>],
}

impl ShaderSource {
    /// The file the kernel was expanded from, e.g. "shaders/conv_gemm.wgsl".
    pub fn file(&self) -> &'static str {
        self.lines.first().map_or(self.name, |(_, file, _)| file)
    }
}

/// Every kernel of shaders/ (its top-level files), embedded at build time with includes expanded.
pub fn shader_sources() -> &'static [ShaderSource] {
    embedded::SHADERS
}

pub fn shader_source(name: &str) -> Result<&'static ShaderSource> {
    embedded::SHADERS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow!("no shader shaders/{name}.wgsl"))
}

/// Shaders compiled without naga's runtime checks (index clamps, loop-bound counters, guarded
/// integer division). Their hot loops have constant trip counts that the driver unrolls into
/// register-resident tiles; the checks defeat that (on lavapipe the conv kernels run 3-10x slower
/// with them). A file belongs here only if every buffer and array index it computes is in range,
/// every loop finite and every divisor non-zero by construction (loads clamp their index and select 0, stores are
/// masked, shapes are validated by the host wrapper), with tests covering tiles that overhang the
/// tensors, padding and channel tails.
/// infer_binconv (the packed engine's fused conv) joined the list after an NVIDIA H100 ran it 4-8x
/// slower than binconv, its unchecked twin, on the same work (2026-11-26).
/// The software adapters' walk kernels (`KernelVariant::Software`) ran 1.5-2.5x faster on
/// lavapipe without the checks (2026-12-03); their GPU-variant twins stay checked. So did
/// weight_software, the software adapters' weight side (2026-12-04).
const UNCHECKED_SHADERS: &[&str] = &[
    "conv_gemm",
    "conv_direct",
    "conv_direct4",
    "conv_weight4",
    "binconv",
    "infer_binconv",
    "batchnorm_walk",
    "channel_dot_walk",
    "standardize_walk",
    "weight_software",
];

/// Parses and validates a shader with naga; an error names the original file (the kernel or the
/// shaders/common/ file it includes), line and column.
pub fn validate_wgsl(shader: &ShaderSource) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let source = shader.source;
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        let labels = e.labels().map(|(span, text)| (span, text.to_string()));
        anyhow!(
            "{}",
            report(shader, e.message(), labels.collect(), e.notes().collect())
        )
    })?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| {
        let mut notes = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e.as_inner());
        while let Some(c) = cause {
            notes.push(c.to_string());
            cause = c.source();
        }
        let notes: Vec<&str> = notes.iter().map(String::as_str).collect();
        anyhow!(
            "{}",
            report(
                shader,
                &e.as_inner().to_string(),
                e.spans().cloned().collect(),
                notes
            )
        )
    })?;
    Ok((module, info))
}

/// A naga error as "file:line:col" lines of the original files, each with its source line.
fn report(
    shader: &ShaderSource,
    message: &str,
    labels: Vec<(naga::Span, String)>,
    notes: Vec<&str>,
) -> String {
    let mut out = format!("error in shader {}: {message}", shader.file());
    for (span, text) in labels {
        let Some(range) = span.to_range() else {
            continue;
        };
        let at = span.location(shader.source);
        let line_text = shader.source[range.start - (at.line_position as usize - 1)..]
            .lines()
            .next()
            .unwrap_or("");
        let (file, line) =
            locate(shader.lines, at.line_number).unwrap_or((shader.file(), at.line_number));
        out += &format!(
            "\n  {file}:{line}:{}: {text}\n    | {}",
            at.line_position,
            line_text.trim_end()
        );
    }
    for note in notes {
        out += &format!("\n  note: {note}");
    }
    out
}

/// ((binding, read_only) per used binding, immediate bytes): the "function signature" of a kernel.
pub(super) type LayoutKey = (Vec<(u32, bool)>, u32);

#[derive(Default)]
pub(super) struct KernelCache {
    modules: HashMap<String, Arc<ShaderModuleInfo>>,
    kernels: HashMap<String, Arc<Kernel>>,
}

struct ShaderModuleInfo {
    module: wgpu::ShaderModule,
    naga: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// A compiled compute pipeline and what is needed to bind and dispatch it.
pub struct Kernel {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: Arc<wgpu::BindGroupLayout>,
    /// (binding number, read_only) of each storage binding of group 0 the entry point uses, in
    /// increasing binding order: `Gpu::dispatch` takes one buffer per entry, in this order.
    pub bindings: Vec<(u32, bool)>,
    pub immediate_size: u32,
    pub workgroup_size: [u32; 3],
}

/// One dispatch with its bind group, created once and recorded every step.
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    /// None on a memory planner (gpu::plan), whose dispatches are never recorded.
    pub bind_group: Option<wgpu::BindGroup>,
    pub workgroups: [u32; 3],
    pub immediates: Vec<u8>,
    /// Floating-point (or binary) operations of one run, for benchmarks' GFLOP/s: set by the
    /// convolution wrappers (2 per multiply-add), 0 elsewhere.
    pub flop: f64,
    /// Bytes of the buffers bound (each counted once), for benchmarks' GB/s.
    pub bytes: u64,
    /// On a memory planner, the label of each tensor bound and whether the kernel only reads
    /// it (for the liveness of a network's tensors, model::network); empty on a real Gpu.
    pub binds: Vec<(String, bool)>,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.record_with(pass, &self.immediates);
    }

    /// Records with other immediates (same size), e.g. the learning rate of this step.
    pub fn record_with(&self, pass: &mut wgpu::ComputePass<'_>, immediates: &[u8]) {
        debug_assert_eq!(immediates.len() as u32, self.kernel.immediate_size);
        pass.set_pipeline(&self.kernel.pipeline);
        pass.set_bind_group(0, self.bind_group.as_ref(), &[]);
        if !immediates.is_empty() {
            pass.set_immediates(0, immediates);
        }
        let [x, y, z] = self.workgroups;
        if x > 0 && y > 0 && z > 0 {
            pass.dispatch_workgroups(x, y, z);
        }
    }

    pub fn label(&self) -> &str {
        &self.kernel.name
    }

    /// This dispatch, counting `flop` operations per run.
    pub fn with_flop(mut self, flop: f64) -> Dispatch {
        self.flop = flop;
        self
    }
}

/// Workgroup counts covering `threads` invocations with 1D workgroups of `wg` lanes, split over
/// x and y when x would exceed the 65535 limit. Shaders take the flat index as
/// `gid.x + gid.y * nwg.x * wg` (with `@builtin(num_workgroups) nwg`) and bound-check it.
pub fn grid_1d(threads: usize, wg: u32) -> [u32; 3] {
    let groups = threads.div_ceil(wg as usize).max(1) as u32;
    if groups <= 65535 {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y), y, 1]
    }
}

impl Gpu {
    fn shader_module(
        &self,
        cache: &mut KernelCache,
        shader: &ShaderSource,
    ) -> Result<Arc<ShaderModuleInfo>> {
        let name = shader.name;
        if let Some(m) = cache.modules.get(name) {
            return Ok(m.clone());
        }
        let (naga_module, info) = validate_wgsl(shader)?;
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(shader.file()),
            source: wgpu::ShaderSource::Wgsl(shader.source.into()),
        };
        let module = if UNCHECKED_SHADERS.contains(&name) {
            // SAFETY: the shaders of UNCHECKED_SHADERS keep every index in range and every loop
            // finite by construction (see the list's comment).
            unsafe {
                self.device
                    .create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            self.device.create_shader_module(desc)
        };
        let m = Arc::new(ShaderModuleInfo {
            module,
            naga: naga_module,
            info,
        });
        cache.modules.insert(name.to_string(), m.clone());
        Ok(m)
    }

    fn bind_group_layout(&self, key: &LayoutKey) -> Arc<wgpu::BindGroupLayout> {
        let mut layouts = self.layouts.lock().unwrap();
        layouts
            .entry(key.clone())
            .or_insert_with(|| {
                let entries: Vec<wgpu::BindGroupLayoutEntry> = key
                    .0
                    .iter()
                    .map(|&(binding, read_only)| wgpu::BindGroupLayoutEntry {
                        binding,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    })
                    .collect();
                let label = key
                    .0
                    .iter()
                    .map(|&(_, r)| if r { 'r' } else { 'w' })
                    .collect::<String>();
                Arc::new(
                    self.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: Some(&label),
                            entries: &entries,
                        }),
                )
            })
            .clone()
    }

    /// The kernel `entry` of shaders/`shader`.wgsl with the given override constants, compiled
    /// once and cached.
    pub fn kernel(
        &self,
        shader: &str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        self.kernel_from(shader_source(shader)?, entry, constants)
    }

    /// `kernel` from a shader that is not embedded, e.g. a test's own WGSL (tests/shaders/).
    /// Kernels are cached by the shader's name, which must differ from the embedded ones.
    pub fn kernel_from(
        &self,
        source: &ShaderSource,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<Arc<Kernel>> {
        let shader = source.name;
        let file = source.file();
        let key = format!("{shader}::{entry}{constants:?}");
        let mut cache = self.kernels.lock().unwrap();
        if let Some(k) = cache.kernels.get(&key) {
            return Ok(k.clone());
        }
        let m = self.shader_module(&mut cache, source)?;
        let (ep_index, ep) = m
            .naga
            .entry_points
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == entry)
            .ok_or_else(|| anyhow!("{file} has no entry point {entry}"))?;
        let uses = m.info.get_entry_point(ep_index);
        let mut bindings: Vec<(u32, bool)> = Vec::new();
        let mut immediate_size = 0u32;
        let mut layouter = naga::proc::Layouter::default();
        layouter
            .update(m.naga.to_ctx())
            .map_err(|e| anyhow!("{file}: layout: {e}"))?;
        for (handle, var) in m.naga.global_variables.iter() {
            if uses[handle].is_empty() {
                continue;
            }
            match var.space {
                naga::AddressSpace::Storage { access } => {
                    let b = var
                        .binding
                        .as_ref()
                        .ok_or_else(|| anyhow!("{file}: storage variable without binding"))?;
                    if b.group != 0 {
                        bail!("{file}: kernels use bind group 0 only");
                    }
                    bindings.push((b.binding, !access.contains(naga::StorageAccess::STORE)));
                }
                naga::AddressSpace::Immediate => {
                    immediate_size = layouter[var.ty].size;
                }
                naga::AddressSpace::Uniform | naga::AddressSpace::Handle => {
                    bail!("{file}: kernels take storage buffers and immediates only")
                }
                _ => {}
            }
        }
        bindings.sort();
        if immediate_size > self.limits.max_immediate_size {
            bail!(
                "{file} {entry}: {immediate_size} B of immediates, adapter allows {}",
                self.limits.max_immediate_size
            );
        }
        let layout = self.bind_group_layout(&(bindings.clone(), immediate_size));
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&key),
                bind_group_layouts: &[Some(&layout)],
                immediate_size,
            });
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&key),
                layout: Some(&pipeline_layout),
                module: &m.module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("creating kernel {key}: {e}");
        }
        let workgroup_size = ep.workgroup_size;
        let kernel = Arc::new(Kernel {
            name: key.clone(),
            pipeline,
            layout,
            bindings,
            immediate_size,
            workgroup_size,
        });
        cache.kernels.insert(key, kernel.clone());
        Ok(kernel)
    }

    /// Binds `buffers` to the bindings `kernel` uses, in increasing binding number (bind group
    /// created here, once).
    pub fn dispatch(
        &self,
        kernel: &Arc<Kernel>,
        buffers: &[&Tensor],
        immediates: &[u8],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        if buffers.len() != kernel.bindings.len() {
            bail!(
                "kernel {} takes {} buffers, got {}",
                kernel.name,
                kernel.bindings.len(),
                buffers.len()
            );
        }
        if immediates.len() as u32 != kernel.immediate_size {
            bail!(
                "kernel {} takes {} bytes of immediates, got {}",
                kernel.name,
                kernel.immediate_size,
                immediates.len()
            );
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            bail!(
                "kernel {}: {:?} workgroups exceeds the adapter's limit of {max} per dimension",
                kernel.name,
                workgroups
            );
        }
        for t in buffers {
            if t.bytes() > self.max_binding_bytes() {
                bail!(
                    "tensor {} needs {} MiB, over the adapter's storage binding limit of {} MiB \
                     (max_storage_buffer_binding_size); use a smaller batch",
                    t.label,
                    t.bytes() >> 20,
                    self.max_binding_bytes() >> 20
                );
            }
        }
        let (bind_group, binds) = match self.plan {
            // Checked as a real dispatch is, but a planner's tensors have no buffer to bind.
            Some(_) => {
                let binds = buffers.iter().zip(&kernel.bindings);
                (
                    None,
                    binds.map(|(t, &(_, ro))| (t.label.clone(), ro)).collect(),
                )
            }
            None => (Some(self.bind_group(kernel, buffers)), Vec::new()),
        };
        Ok(Dispatch {
            kernel: kernel.clone(),
            bind_group,
            workgroups,
            immediates: immediates.to_vec(),
            flop: 0.0,
            bytes: buffers.iter().map(|t| t.bytes()).sum(),
            binds,
        })
    }

    fn bind_group(&self, kernel: &Kernel, buffers: &[&Tensor]) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .zip(&kernel.bindings)
            .map(|(t, &(binding, _))| wgpu::BindGroupEntry {
                binding,
                resource: t.binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.name),
            layout: &kernel.layout,
            entries: &entries,
        })
    }

    /// Records `dispatches` into one compute pass of one encoder, submits, and waits. For tests
    /// and one-off work; the training step records its own pass.
    pub fn run(&self, dispatches: &[&Dispatch]) -> Result<()> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("run") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("run"),
                timestamp_writes: None,
            });
            for d in dispatches {
                d.record(&mut pass);
            }
        }
        self.queue.submit([encoder.finish()]);
        self.wait()
    }
}
