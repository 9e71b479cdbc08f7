//! Which adapter rbnn runs on: the rules, as pure functions over adapter descriptions (so they are
//! tested without any adapter), and the one message a user gets when no adapter can run rbnn.
//!
//! An adapter can run rbnn when its backend is Vulkan, Metal or DX12 and it offers immediates
//! (push constants, which every kernel uses). wgpu's GL backend is never chosen: it translates
//! WGSL to GLSL, and rbnn's kernels do not survive that (shaders/conv.wgsl is refused as an
//! invalid shader module on Mesa's llvmpipe GL, after the build and the data loading).

/// What selection knows about one adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterFacts {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub features: wgpu::Features,
}

impl AdapterFacts {
    pub fn new(info: &wgpu::AdapterInfo, features: wgpu::Features) -> AdapterFacts {
        AdapterFacts {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            features,
        }
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)".
    pub fn label(&self) -> String {
        format!("{} ({:?}, {:?})", self.name, self.backend, self.device_type)
    }
}

/// Why rbnn cannot run on this adapter; None when it can.
pub fn unusable_reason(a: &AdapterFacts) -> Option<String> {
    match a.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => {}
        wgpu::Backend::Gl => {
            return Some(
                "OpenGL: wgpu's GL backend cannot compile rbnn's compute kernels \
                 (shaders/conv.wgsl is rejected as an invalid shader module)"
                    .into(),
            )
        }
        other => {
            return Some(format!(
                "the {other:?} backend runs no native compute kernels"
            ))
        }
    }
    if !a.features.contains(wgpu::Features::IMMEDIATES) {
        return Some("no immediates (push constants), which every rbnn kernel uses".into());
    }
    None
}

/// Lower is better: a real GPU before a software one.
pub fn rank(a: &AdapterFacts) -> u32 {
    match a.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// What the user asked for: a name filter (--adapter or WGPU_ADAPTER_NAME, lower case) and the
/// WGPU_BACKEND value that limited the enumeration, if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub name: Option<String>,
    pub backend_env: Option<String>,
}

/// The index of the adapter to use: the best-ranked usable adapter whose name contains the
/// filter (the first of equals, in the given order). The error is the whole message for the user.
pub fn choose(adapters: &[AdapterFacts], request: &Request) -> Result<usize, String> {
    choose_for_rank(adapters, request, 0)
}

/// The adapter of the process with local rank `local_rank` among a data-parallel job's
/// processes on one machine: the usable adapters whose name contains the filter and that share
/// the best rank and the backend of the first of them (all the discrete GPUs through Vulkan, say:
/// never a software adapter beside them, nor one GPU twice through two backends), in the given
/// order, taken in turn: number `local_rank` modulo their count. Rank 0 gets what `choose` gives.
pub fn choose_for_rank(
    adapters: &[AdapterFacts],
    request: &Request,
    local_rank: usize,
) -> Result<usize, String> {
    let matching: Vec<usize> = (0..adapters.len())
        .filter(|&i| match &request.name {
            Some(f) => adapters[i].name.to_lowercase().contains(f.as_str()),
            None => true,
        })
        .collect();
    if let (Some(f), true, false) = (&request.name, matching.is_empty(), adapters.is_empty()) {
        let names: Vec<String> = adapters.iter().map(AdapterFacts::label).collect();
        return Err(format!(
            "no adapter name contains {f:?} (from --adapter or WGPU_ADAPTER_NAME); adapters \
             present: {}",
            names.join(", ")
        ));
    }
    let usable: Vec<usize> = matching
        .iter()
        .copied()
        .filter(|&i| unusable_reason(&adapters[i]).is_none())
        .collect();
    let best = usable
        .iter()
        .map(|&i| rank(&adapters[i]))
        .min()
        .ok_or_else(|| no_usable_adapter(adapters, &matching, request))?;
    let equals: Vec<usize> = usable
        .into_iter()
        .filter(|&i| rank(&adapters[i]) == best)
        .collect();
    let backend = adapters[equals[0]].backend;
    let equals: Vec<usize> = equals
        .into_iter()
        .filter(|&i| adapters[i].backend == backend)
        .collect();
    Ok(equals[local_rank % equals.len()])
}

/// The message when no adapter can run rbnn: what was found, why each cannot be used, and the
/// command that installs one, per platform.
pub fn no_usable_adapter(
    adapters: &[AdapterFacts],
    considered: &[usize],
    request: &Request,
) -> String {
    let mut m = String::from("no adapter that can run rbnn");
    if adapters.is_empty() {
        m += ": wgpu found no adapter at all";
    } else {
        m += &format!(" (it needs {NEEDS}); wgpu found:");
        for (i, a) in adapters.iter().enumerate() {
            let verdict = match unusable_reason(a) {
                Some(reason) => reason,
                None if !considered.contains(&i) => "not the adapter asked for".into(),
                None => "usable".into(),
            };
            m += &format!("\n  {}: {verdict}", a.label());
        }
    }
    if let Some(b) = &request.backend_env {
        m +=
            &format!("\nWGPU_BACKEND={b} limits wgpu to that backend: unset it to let rbnn choose");
    }
    if let Some(f) = &request.name {
        m += &format!(
            "\n--adapter / WGPU_ADAPTER_NAME {f:?} limits the choice to adapters whose name \
             contains it"
        );
    }
    m += "\nTo get an adapter rbnn can use:";
    m += "\n  Debian/Ubuntu: sudo apt-get install mesa-vulkan-drivers (lavapipe, a software \
          Vulkan adapter that runs everything on the CPU, slowly; with a GPU, its Vulkan driver)";
    m += "\n  Fedora: sudo dnf install mesa-vulkan-drivers";
    m += "\n  macOS: Metal is built in (macOS 10.13 or later): run without WGPU_BACKEND";
    m += "\n  Windows: DX12 is built in (Windows 10 or later): update the graphics driver";
    m
}

/// The requirement in one phrase.
const NEEDS: &str = "Vulkan, Metal or DX12 with immediates";
