//! Adapter selection and the device every tensor and kernel belongs to.

use super::environment;
use super::kernel::{KernelCache, LayoutKey};
use super::select::{self, AdapterFacts, Request};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Features we use when the adapter has them; none is required except IMMEDIATES (see
/// `select::unusable_reason`).
const WANTED_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS)
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::IMMEDIATES)
    .union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// What `rbnn info` prints about one adapter.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix (tensor core) shapes and types the adapter offers.
    pub cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
}

/// "16x16x16 F16->F32, 16x8x16 F16->F32" (M x N x K, A/B type -> C type), or "none".
pub fn describe_cooperative(props: &[wgpu::CooperativeMatrixProperties]) -> String {
    if props.is_empty() {
        return "none".to_string();
    }
    props
        .iter()
        .map(|p| {
            format!(
                "{}x{}x{} {:?}->{:?}",
                p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl AdapterSummary {
    pub fn facts(&self) -> AdapterFacts {
        AdapterFacts::new(&self.info, self.features)
    }

    /// Why rbnn cannot run on this adapter (None when it can).
    pub fn unusable_reason(&self) -> Option<String> {
        select::unusable_reason(&self.facts())
    }

    pub fn describe(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        let f = &self.features;
        let yes = |b: bool| if b { "yes" } else { "no" };
        format!(
            "{} | {:?} | {:?} | driver: {} {}\n    max storage binding {} MiB, max buffer {} MiB, \
             storage buffers/stage {}, workgroup memory {} KiB, invocations/workgroup {}, \
             workgroups/dim {}, immediates {} B\n    subgroup size {}..{}, subgroups: {}, \
             timestamp queries: {} (inside passes: {}), f16: {}\n    cooperative matrix: {}{}",
            i.name,
            i.backend,
            i.device_type,
            i.driver,
            i.driver_info,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20,
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size >> 10,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.max_immediate_size,
            i.subgroup_min_size,
            i.subgroup_max_size,
            yes(f.contains(wgpu::Features::SUBGROUP)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)),
            yes(f.contains(wgpu::Features::SHADER_F16)),
            if f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
                describe_cooperative(&self.cooperative_matrix)
            } else {
                "no".to_string()
            },
            match self.unusable_reason() {
                Some(reason) => format!("\n    UNUSABLE by rbnn: {reason}"),
                None => String::new(),
            },
        )
    }
}

/// The environment variable that overrides `Gpu::kernel_variant`.
pub const KERNEL_VARIANT_ENV: &str = "RBNN_KERNEL_VARIANT";

/// How the per-channel and per-sample kernels (BatchNorm, channel dots) are formulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelVariant {
    /// One element per invocation and 256-lane workgroup trees: many threads for a GPU.
    Gpu,
    /// Each invocation walks many elements, per-channel values load once per workgroup, no
    /// integer division per element and no barrier in the first stage of a reduction
    /// (shaders/common/channel_walk.wgsl): software adapters, where lanes are SIMD lanes,
    /// divergent loads loop over them and barriers switch between subgroups.
    Software,
}

impl KernelVariant {
    /// "gpu" or "software".
    pub fn parse(s: &str) -> Result<KernelVariant> {
        match s {
            "gpu" => Ok(KernelVariant::Gpu),
            "software" => Ok(KernelVariant::Software),
            _ => bail!("{KERNEL_VARIANT_ENV}={s:?}: expected \"gpu\" or \"software\""),
        }
    }
}

/// The device, its queue and the kernel cache. Created once per process (it is Send + Sync).
pub struct Gpu {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// Cooperative-matrix configurations; empty unless the device has the feature enabled.
    pub cooperative_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    pub(super) kernels: Arc<Mutex<KernelCache>>,
    pub(super) layouts: Arc<Mutex<HashMap<LayoutKey, Arc<wgpu::BindGroupLayout>>>>,
    /// Validation errors wgpu reports asynchronously (a misuse of the API, not of user input).
    pub(super) errors: Arc<Mutex<Vec<String>>>,
    /// Set on a planner (gpu::plan): tensors are counted, not allocated.
    pub(super) plan: Option<super::plan::Tally>,
}

/// Every adapter of the backends WGPU_BACKEND names (vulkan, metal, dx12, gl); without it, of
/// Vulkan/Metal/DX12, and of GL only when those have none (GL cannot run rbnn, but it is listed
/// so that the error says what was found; headless, it complains about the missing display).
fn enumerate() -> Vec<wgpu::Adapter> {
    environment::prepare();
    let from_env = std::env::var_os("WGPU_BACKEND").is_some();
    let make = |backends: Option<wgpu::Backends>| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if let Some(b) = backends {
            desc.backends = b;
        }
        let inst = wgpu::Instance::new(desc);
        pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
    };
    if from_env {
        return make(None);
    }
    let primary = make(Some(wgpu::Backends::PRIMARY));
    if primary.is_empty() {
        make(Some(wgpu::Backends::all()))
    } else {
        primary
    }
}

/// What the user asked for: the --adapter flag, else WGPU_ADAPTER_NAME (case-insensitive
/// substring), and WGPU_BACKEND.
fn request(flag: Option<&str>) -> Request {
    let nonempty = |s: String| (!s.is_empty()).then_some(s);
    Request {
        name: flag
            .map(str::to_string)
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .and_then(nonempty)
            .map(|s| s.to_lowercase()),
        backend_env: std::env::var("WGPU_BACKEND").ok().and_then(nonempty),
    }
}

/// Every adapter wgpu can see, usable ones first, each group best first (the first one is what
/// `Gpu::new(None)` picks when it is usable).
pub fn list_adapters() -> Vec<AdapterSummary> {
    let mut all: Vec<AdapterSummary> = enumerate()
        .into_iter()
        .map(|a| AdapterSummary {
            info: a.get_info(),
            limits: a.limits(),
            features: a.features(),
            cooperative_matrix: a.cooperative_matrix_properties(),
        })
        .collect();
    all.sort_by_key(|a| (a.unusable_reason().is_some(), select::rank(&a.facts())));
    all
}

impl Gpu {
    /// Every adapter wgpu can see, best first.
    pub fn adapters() -> Vec<AdapterSummary> {
        list_adapters()
    }

    /// Picks the adapter (`select::choose`: the best usable one, among those whose name contains
    /// `adapter_name` or WGPU_ADAPTER_NAME when given) and opens a device with the adapter's own
    /// limits. Without a usable adapter the error says what was found and how to get one.
    pub fn new(adapter_name: Option<&str>) -> Result<Gpu> {
        Self::for_local_rank(adapter_name, 0)
    }

    /// `new` for the process of local rank `local_rank` of a data-parallel job
    /// (`select::choose_for_rank`: the equally good usable adapters taken in turn).
    pub fn for_local_rank(adapter_name: Option<&str>, local_rank: usize) -> Result<Gpu> {
        let mut adapters = enumerate();
        let facts: Vec<AdapterFacts> = adapters
            .iter()
            .map(|a| AdapterFacts::new(&a.get_info(), a.features()))
            .collect();
        let chosen = select::choose_for_rank(&facts, &request(adapter_name), local_rank)
            .map_err(|m| anyhow!(m))?;
        Self::from_adapter(adapters.swap_remove(chosen))
    }

    fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let features = adapter.features() & WANTED_FEATURES;
        let limits = adapter.limits();
        let cooperative = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let experimental_features = if cooperative {
            // SAFETY: the only experimental feature requested is cooperative matrices, used by
            // kernels that are tested against a CPU reference before they are selected.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let cooperative_matrix = if cooperative {
            adapter.cooperative_matrix_properties()
        } else {
            Vec::new()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("rbnn"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .with_context(|| format!("opening a device on adapter {}", info.name))?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap().push(e.to_string());
        }));
        Ok(Gpu {
            adapter,
            device,
            queue,
            info,
            limits,
            features,
            cooperative_matrix,
            kernels: Arc::default(),
            layouts: Arc::default(),
            errors,
            plan: None,
        })
    }

    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary {
            info: self.info.clone(),
            limits: self.limits.clone(),
            features: self.features,
            cooperative_matrix: self.cooperative_matrix.clone(),
        }
    }

    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// True for lavapipe, llvmpipe, WARP and other adapters that run on the CPU.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The formulation of the per-channel and per-sample kernels a network is built with:
    /// `KernelVariant::Software` on software adapters, else `KernelVariant::Gpu`;
    /// RBNN_KERNEL_VARIANT=gpu or =software in the environment overrides that (to compare them,
    /// or to run the GPU formulation's kernels on lavapipe).
    pub fn kernel_variant(&self) -> Result<KernelVariant> {
        match std::env::var(KERNEL_VARIANT_ENV) {
            Ok(v) => KernelVariant::parse(&v),
            Err(_) if self.is_software() => Ok(KernelVariant::Software),
            Err(_) => Ok(KernelVariant::Gpu),
        }
    }

    /// Fails with wgpu's own message if it reported a validation error since the last check.
    pub fn check_errors(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let all = errors.join("\n");
        errors.clear();
        bail!("wgpu reported: {all}")
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the GPU: {e}"))?;
        self.check_errors()
    }

    /// Largest storage binding the adapter allows, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }
}
