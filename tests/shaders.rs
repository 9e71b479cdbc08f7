//! Every kernel of shaders/ is embedded (with its includes expanded), parses, validates and
//! translates to SPIR-V with naga, so a shader error fails here with its file and line before any
//! GPU is touched; the include step (src/gpu/wgsl_include.rs, run by build.rs) expands each file
//! once, fails on missing files and cycles, and maps naga's errors back to the original file.

use rbnn::gpu::wgsl_include::{expand, locate};
use rbnn::gpu::{shader_sources, validate_wgsl, ShaderSource};
use std::path::{Path, PathBuf};

/// The test-only shaders of tests/shaders/ (loaded by their tests, not embedded).
const TEST_SHADERS: &[ShaderSource] = &[ShaderSource {
    name: "test_coop_gemm",
    source: include_str!("shaders/coop_gemm.wgsl"),
    lines: &[(1, "tests/shaders/coop_gemm.wgsl", 1)],
}];

fn all_shaders() -> impl Iterator<Item = &'static ShaderSource> {
    shader_sources().iter().chain(TEST_SHADERS)
}

fn wgsl_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("wgsl"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn every_kernel_file_is_embedded_and_common_files_are_not() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let embedded: Vec<String> = shader_sources()
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert!(!embedded.is_empty());
    assert_eq!(embedded, wgsl_files(&root.join("shaders")));
    let common = wgsl_files(&root.join("shaders/common"));
    assert!(!common.is_empty(), "shaders/common/ holds the shared code");
    for name in &common {
        assert!(
            !embedded.contains(name),
            "common/{name}.wgsl is not a kernel"
        );
    }
    assert!(
        !embedded.iter().any(|n| n == "coop_gemm"),
        "the test-only coop_gemm (tests/shaders/) is not embedded in the binary"
    );
    // Every shared file says what it defines and is included by some kernel.
    for name in &common {
        let file = format!("shaders/common/{name}.wgsl");
        let text = std::fs::read_to_string(root.join(&file)).unwrap();
        assert!(
            text.starts_with("// defines: "),
            "{file} opens with a `// defines:` line"
        );
        assert!(
            shader_sources()
                .iter()
                .any(|s| s.lines.iter().any(|(_, f, _)| *f == file)),
            "{file} is included by no kernel"
        );
    }
}

#[test]
fn every_shader_validates_with_naga() {
    let mut failures = Vec::new();
    for shader in all_shaders() {
        if let Err(e) = validate_wgsl(shader) {
            failures.push(format!("{e:#}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every shader also translates to SPIR-V (what the Vulkan backend feeds the driver): naga's
/// SPIR-V writer rejects some constructs its validator accepts, e.g. cooperative-matrix loads
/// whose index or stride is not a plain `let`.
#[test]
fn every_shader_translates_to_spirv() {
    let mut failures = Vec::new();
    for shader in all_shaders() {
        let file = shader.file();
        let (module, info) = validate_wgsl(shader).unwrap();
        // Override constants at their defaults, as pipeline creation resolves them.
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            None,
            &Default::default(),
        )
        .unwrap_or_else(|e| panic!("{file}: overrides: {e}"));
        let options = naga::back::spv::Options::default();
        let result = std::panic::catch_unwind(|| {
            naga::back::spv::write_vec(&module, &info, &options, None).map(|w| w.len())
        });
        match result {
            Ok(Ok(words)) => assert!(words > 0),
            Ok(Err(e)) => failures.push(format!("{file}: {e}")),
            Err(_) => failures.push(format!("{file}: naga's SPIR-V writer panicked")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A scratch folder of WGSL files for the include tests, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, files: &[(&str, &str)]) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rbnn-include-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn includes_expand_recursively_once_each_with_a_line_map() {
    let dir = Scratch::new(
        "ok",
        &[
            (
                "kernel.wgsl",
                "// kernel\n// #include \"common/a.wgsl\"\n// #include \"common/b.wgsl\"\nfn k() {}\n",
            ),
            ("common/a.wgsl", "// #include \"common/b.wgsl\"\nfn a() {}\n"),
            ("common/b.wgsl", "fn b() {}\nfn b2() {}\n"),
        ],
    );
    let e = expand(&dir.0, "shaders/", "kernel.wgsl").unwrap();
    let lines: Vec<&str> = e.source.lines().collect();
    assert_eq!(
        lines,
        [
            "// kernel",
            "// #include \"common/a.wgsl\"",
            "// #include \"common/b.wgsl\"",
            "fn b() {}",
            "fn b2() {}",
            "fn a() {}",
            "// #include \"common/b.wgsl\"",
            "fn k() {}",
        ],
        "b is expanded once, where a first includes it"
    );
    assert_eq!(e.line_count, 8);
    assert_eq!(
        e.files,
        [
            "shaders/kernel.wgsl",
            "shaders/common/a.wgsl",
            "shaders/common/b.wgsl"
        ]
    );
    let want = [
        ("shaders/kernel.wgsl", 1),
        ("shaders/kernel.wgsl", 2),
        ("shaders/common/a.wgsl", 1),
        ("shaders/common/b.wgsl", 1),
        ("shaders/common/b.wgsl", 2),
        ("shaders/common/a.wgsl", 2),
        ("shaders/kernel.wgsl", 3),
        ("shaders/kernel.wgsl", 4),
    ];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(
            locate(&e.lines, i as u32 + 1),
            Some(*w),
            "expanded line {}",
            i + 1
        );
    }
    assert_eq!(locate(&e.lines, 0), None);
}

#[test]
fn a_missing_include_or_a_cycle_is_an_error_naming_the_directive() {
    let dir = Scratch::new(
        "bad",
        &[
            (
                "missing.wgsl",
                "fn k() {}\n// #include \"common/nope.wgsl\"\n",
            ),
            ("cycle.wgsl", "// #include \"common/a.wgsl\"\n"),
            (
                "common/a.wgsl",
                "fn a() {}\n// #include \"common/b.wgsl\"\n",
            ),
            ("common/b.wgsl", "// #include \"common/a.wgsl\"\n"),
            ("malformed.wgsl", "// #include common/a.wgsl\n"),
        ],
    );
    let e = expand(&dir.0, "shaders/", "missing.wgsl").unwrap_err();
    assert!(
        e.contains("cannot read shaders/common/nope.wgsl")
            && e.contains("included from shaders/missing.wgsl:2"),
        "{e}"
    );
    let e = expand(&dir.0, "shaders/", "cycle.wgsl").unwrap_err();
    assert!(
        e.contains("shaders/common/b.wgsl:1: include cycle: shaders/common/a.wgsl -> shaders/common/b.wgsl -> shaders/common/a.wgsl"),
        "{e}"
    );
    let e = expand(&dir.0, "shaders/", "malformed.wgsl").unwrap_err();
    assert!(
        e.contains("shaders/malformed.wgsl:1: malformed include"),
        "{e}"
    );
}

/// A naga error inside an included file is reported at that file's line, not the expanded one.
#[test]
fn naga_errors_name_the_original_file_and_line() {
    const BROKEN: ShaderSource = ShaderSource {
        name: "broken",
        source: "// #include \"common/util.wgsl\"\nfn util() -> u32 {\n    return 1u;\n}\n\nfn twice() -> u32 {\n    return util() + undefined_name;\n}\n",
        // Expanded lines 2-4 come from common/util.wgsl lines 1-3; 5.. from the kernel, line 2 on.
        lines: &[
            (1, "shaders/broken.wgsl", 1),
            (2, "shaders/common/util.wgsl", 1),
            (5, "shaders/broken.wgsl", 2),
        ],
    };
    let e = format!("{:#}", validate_wgsl(&BROKEN).unwrap_err());
    assert!(e.contains("shaders/broken.wgsl:4:21"), "{e}");
    assert!(e.contains("undefined_name"), "{e}");
    const INVALID: ShaderSource = ShaderSource {
        name: "invalid",
        source: "// #include \"common/util.wgsl\"\nfn util() -> u32 {\n    return 1.0;\n}\n",
        lines: &[
            (1, "shaders/invalid.wgsl", 1),
            (2, "shaders/common/util.wgsl", 1),
        ],
    };
    let e = format!("{:#}", validate_wgsl(&INVALID).unwrap_err());
    assert!(e.contains("shaders/common/util.wgsl:"), "{e}");
    assert!(!e.contains("shaders/invalid.wgsl:3"), "{e}");
}
