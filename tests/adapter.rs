//! Adapter selection (src/gpu/select.rs) on described adapters: no GPU needed. rbnn never picks
//! an adapter that cannot run its kernels (GL, no immediates), and without a usable one the
//! message lists what was found, why each cannot be used, and how to get one per platform.

use rbnn::gpu::select::{choose, unusable_reason, AdapterFacts, Request};
use wgpu::{Backend, DeviceType, Features};

fn adapter(name: &str, backend: Backend, device_type: DeviceType) -> AdapterFacts {
    AdapterFacts {
        name: name.into(),
        backend,
        device_type,
        features: Features::IMMEDIATES | Features::SUBGROUP,
    }
}

fn lavapipe() -> AdapterFacts {
    adapter(
        "llvmpipe (LLVM 15.0.6, 256 bits)",
        Backend::Vulkan,
        DeviceType::Cpu,
    )
}

fn llvmpipe_gl() -> AdapterFacts {
    adapter(
        "llvmpipe (LLVM 15.0.6, 256 bits)",
        Backend::Gl,
        DeviceType::Cpu,
    )
}

fn any() -> Request {
    Request::default()
}

fn named(filter: &str) -> Request {
    Request {
        name: Some(filter.to_lowercase()),
        backend_env: None,
    }
}

/// The per-platform fixes every "no usable adapter" message carries.
fn assert_names_the_fixes(message: &str) {
    for fix in [
        "apt-get install mesa-vulkan-drivers",
        "dnf install mesa-vulkan-drivers",
        "Metal",
        "DX12",
    ] {
        assert!(message.contains(fix), "no {fix:?} in: {message}");
    }
}

#[test]
fn gl_is_never_chosen_and_the_message_says_why_and_how_to_fix_it() {
    // The machine of the report: Mesa's OpenGL, no Vulkan driver.
    let found = [llvmpipe_gl()];
    let reason = unusable_reason(&found[0]).expect("GL cannot run rbnn");
    assert!(reason.contains("OpenGL"), "{reason}");
    let message = choose(&found, &any()).unwrap_err();
    assert!(
        message.contains("llvmpipe (LLVM 15.0.6, 256 bits) (Gl, Cpu)"),
        "{message}"
    );
    assert!(message.contains(&reason), "{message}");
    assert_names_the_fixes(&message);

    // WGPU_BACKEND=gl: the same message, plus what limited the choice.
    let from_env = Request {
        name: None,
        backend_env: Some("gl".into()),
    };
    let message = choose(&found, &from_env).unwrap_err();
    assert!(message.contains("WGPU_BACKEND=gl"), "{message}");
    assert_names_the_fixes(&message);
}

#[test]
fn a_usable_adapter_wins_over_a_better_ranked_unusable_one() {
    // GL listed first, and a GL "discrete GPU": still the Vulkan one.
    let found = [
        adapter("NVIDIA GeForce (GL)", Backend::Gl, DeviceType::DiscreteGpu),
        lavapipe(),
    ];
    assert_eq!(choose(&found, &any()), Ok(1));
    // A real GPU before a software adapter, whatever the order.
    let found = [
        lavapipe(),
        adapter("Intel UHD", Backend::Vulkan, DeviceType::IntegratedGpu),
        adapter("NVIDIA H100", Backend::Vulkan, DeviceType::DiscreteGpu),
    ];
    assert_eq!(choose(&found, &any()), Ok(2));
    for backend in [Backend::Metal, Backend::Dx12] {
        assert_eq!(
            unusable_reason(&adapter("GPU", backend, DeviceType::IntegratedGpu)),
            None
        );
    }
}

#[test]
fn an_adapter_without_immediates_is_unusable() {
    let mut old = adapter("Old GPU", Backend::Vulkan, DeviceType::DiscreteGpu);
    old.features = Features::SUBGROUP;
    let reason = unusable_reason(&old).unwrap();
    assert!(reason.contains("immediates"), "{reason}");
    assert_eq!(choose(&[old.clone(), lavapipe()], &any()), Ok(1));
    let message = choose(&[old], &any()).unwrap_err();
    assert!(
        message.contains("Old GPU (Vulkan, DiscreteGpu): no immediates"),
        "{message}"
    );
    assert_names_the_fixes(&message);
}

#[test]
fn asking_for_an_unusable_adapter_by_name_gets_the_same_message() {
    let found = [
        lavapipe(),
        adapter(
            "Mesa Intel(R) Graphics (GL)",
            Backend::Gl,
            DeviceType::IntegratedGpu,
        ),
    ];
    assert_eq!(choose(&found, &named("LLVMPIPE")), Ok(0));
    let message = choose(&found, &named("intel")).unwrap_err();
    assert!(
        message.contains("Mesa Intel(R) Graphics (GL) (Gl, IntegratedGpu): OpenGL"),
        "{message}"
    );
    assert!(
        message
            .contains("llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu): not the adapter asked for"),
        "{message}"
    );
    assert!(message.contains("\"intel\""), "{message}");
    assert_names_the_fixes(&message);

    // A name nothing matches is another mistake: the names present are listed.
    let message = choose(&found, &named("radeon")).unwrap_err();
    assert!(
        message.contains("no adapter name contains \"radeon\""),
        "{message}"
    );
    assert!(message.contains("llvmpipe"), "{message}");
}

#[test]
fn no_adapter_at_all() {
    let message = choose(&[], &any()).unwrap_err();
    assert!(message.contains("found no adapter at all"), "{message}");
    assert_names_the_fixes(&message);
    let message = choose(&[], &named("nvidia")).unwrap_err();
    assert_names_the_fixes(&message);
}

#[test]
fn the_ranks_of_a_machine_take_its_best_adapters_in_turn() {
    use rbnn::gpu::select::choose_for_rank;
    let gpu = |name: &str| adapter(name, Backend::Vulkan, DeviceType::DiscreteGpu);
    // Two GPUs, seen through Vulkan and GL, and the software adapter: the ranks share the two
    // GPUs (Vulkan), never the software adapter nor a GPU twice.
    let found = [
        lavapipe(),
        gpu("NVIDIA H100 80GB HBM3"),
        adapter(
            "NVIDIA H100 80GB HBM3",
            Backend::Gl,
            DeviceType::DiscreteGpu,
        ),
        gpu("NVIDIA H100 80GB HBM3"),
    ];
    let picks: Vec<usize> = (0..5)
        .map(|r| choose_for_rank(&found, &any(), r).unwrap())
        .collect();
    assert_eq!(picks, [1, 3, 1, 3, 1]);
    assert_eq!(
        choose(&found, &any()),
        Ok(1),
        "rank 0 gets what choose gives"
    );
    // --adapter narrows the set the ranks share.
    assert_eq!(choose_for_rank(&found, &named("llvmpipe"), 1), Ok(0));
    // A lone software adapter serves every rank.
    assert_eq!(choose_for_rank(&[lavapipe()], &any(), 3), Ok(0));
    assert_names_the_fixes(&choose_for_rank(&[llvmpipe_gl()], &any(), 2).unwrap_err());
}
