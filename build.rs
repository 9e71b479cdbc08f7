//! Embeds every kernel file of shaders/ (the .wgsl files at its top level) into the binary, with
//! its `// #include "common/..."` directives expanded (src/gpu/wgsl_include.rs), so kernels are
//! looked up by file stem (shaders/conv_gemm.wgsl -> "conv_gemm") and a new shader needs no
//! registration by hand. shaders/common/ holds the shared code the kernels include; its files
//! are not kernels themselves.
use std::{env, fs, path::Path};

#[allow(dead_code)]
#[path = "src/gpu/wgsl_include.rs"]
mod wgsl_include;

fn main() {
    // Read at run time, not with env!(): a build script compiled in one checkout and reused from
    // a copied target/ folder must still embed this checkout's shaders.
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("shaders");
    let out_dir = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("wgsl");
    fs::create_dir_all(&out_dir).expect("OUT_DIR is writable");
    println!("cargo:rerun-if-changed={}", dir.display());
    println!("cargo:rerun-if-changed=src/gpu/wgsl_include.rs");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("shaders/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    names.sort();
    let mut out = String::from("pub const SHADERS: &[super::ShaderSource] = &[\n");
    for name in &names {
        let expanded = match wgsl_include::expand(&dir, "shaders/", name) {
            Ok(e) => e,
            Err(e) => {
                // A build error that names the file and line of the bad directive.
                eprintln!("error: {e}");
                println!("cargo:warning={}", e.replace('\n', " "));
                std::process::exit(1);
            }
        };
        for file in &expanded.files {
            println!("cargo:rerun-if-changed={file}");
        }
        let path = out_dir.join(name);
        fs::write(&path, &expanded.source).expect("OUT_DIR is writable");
        let lines: Vec<String> = expanded
            .lines
            .iter()
            .map(|(first, file, line)| format!("({first}, {file:?}, {line})"))
            .collect();
        let stem = name.trim_end_matches(".wgsl");
        let source = path.display().to_string();
        out.push_str(&format!(
            "    super::ShaderSource {{ name: {stem:?}, source: include_str!({source:?}), \
             lines: &[{}] }},\n",
            lines.join(", ")
        ));
    }
    out.push_str("];\n");
    fs::write(out_dir.join("shaders.rs"), out).expect("OUT_DIR is writable");
}
