//! Every file in shaders/ parses and validates with naga, so a shader error fails here with its
//! file and line before any GPU is touched.

#[test]
fn every_shader_validates_with_naga() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        let name = format!("shaders/{}", path.file_name().unwrap().to_string_lossy());
        if let Err(e) = rbnn::gpu::validate_wgsl(&name, &source) {
            failures.push(format!("{e:#}"));
        }
        count += 1;
    }
    assert!(count > 0, "no shaders found in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every shader also translates to SPIR-V (what the Vulkan backend feeds the driver): naga's
/// SPIR-V writer rejects some constructs its validator accepts, e.g. cooperative-matrix loads
/// whose index or stride is not a plain `let`.
#[test]
fn every_shader_translates_to_spirv() {
    let mut failures = Vec::new();
    for (name, source) in rbnn::gpu::shader_sources() {
        let (module, info) = rbnn::gpu::validate_wgsl(name, source).unwrap();
        // Override constants at their defaults, as pipeline creation resolves them.
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            None,
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("shaders/{name}.wgsl: overrides: {e}"));
        let options = naga::back::spv::Options::default();
        let result = std::panic::catch_unwind(|| {
            naga::back::spv::write_vec(&module, &info, &options, None).map(|w| w.len())
        });
        match result {
            Ok(Ok(words)) => assert!(words > 0),
            Ok(Err(e)) => failures.push(format!("shaders/{name}.wgsl: {e}")),
            Err(_) => failures.push(format!(
                "shaders/{name}.wgsl: naga's SPIR-V writer panicked"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
