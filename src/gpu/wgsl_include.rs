//! The include step of the WGSL build. WGSL has no includes, so a shader names the shared code it
//! needs with a directive line
//!
//! ```text
//! // #include "common/conv_params.wgsl"   (a path relative to shaders/)
//! ```
//!
//! and build.rs expands every kernel file of shaders/ before embedding it: each directive is
//! followed by the named file's lines (themselves expanded), each file at most once per kernel
//! (a second directive for it adds nothing), and a missing file or an include cycle fails the
//! build with the file and line of the directive. The expansion keeps a line map, so naga's
//! error locations in the expanded source are reported at the original file and line
//! (`gpu::validate_wgsl`).
//!
//! This file is compiled twice: into build.rs (`#[path]`), which runs `expand`, and into the
//! crate, which reads the line maps with `locate` and lets tests run `expand` on their own files.
//! It uses std only.

use std::fs;
use std::path::Path;

/// The directive, at the start of a line (after spaces), followed by a quoted path.
pub const DIRECTIVE: &str = "// #include ";

/// A run of consecutive expanded lines from one file: expanded line `first` (1-based) is line
/// `line` of `file`, and so on, line for line, until the next run.
pub type LineRun<S> = (u32, S, u32);

/// A kernel file with its includes expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub source: String,
    /// Where each expanded line comes from, in increasing `first`.
    pub lines: Vec<LineRun<String>>,
    /// Every file read, the kernel file first (for the build's rerun-if-changed).
    pub files: Vec<String>,
    /// Lines of `source`.
    pub line_count: u32,
}

/// Expands `file` (a path relative to `root`); files are named `{prefix}{path}` in the line map
/// and in errors (build.rs passes "shaders/").
pub fn expand(root: &Path, prefix: &str, file: &str) -> Result<Expanded, String> {
    let mut out = Expanded {
        source: String::new(),
        lines: Vec::new(),
        files: Vec::new(),
        line_count: 0,
    };
    let mut stack = Vec::new();
    expand_into(root, prefix, file, &mut stack, &mut out)?;
    Ok(out)
}

fn expand_into(
    root: &Path,
    prefix: &str,
    file: &str,
    stack: &mut Vec<String>,
    out: &mut Expanded,
) -> Result<(), String> {
    let name = format!("{prefix}{file}");
    let text =
        fs::read_to_string(root.join(file)).map_err(|e| format!("cannot read {name}: {e}"))?;
    out.files.push(name.clone());
    stack.push(name.clone());
    for (i, line) in text.lines().enumerate() {
        let line_number = i as u32 + 1;
        push_line(out, line, &name, line_number);
        let Some(target) = directive(line).map_err(|e| format!("{name}:{line_number}: {e}"))?
        else {
            continue;
        };
        let target_name = format!("{prefix}{target}");
        if let Some(at) = stack.iter().position(|f| *f == target_name) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(target_name);
            return Err(format!(
                "{name}:{line_number}: include cycle: {}",
                cycle.join(" -> ")
            ));
        }
        if out.files.contains(&target_name) {
            continue;
        }
        expand_into(root, prefix, target, stack, out)
            .map_err(|e| format!("{e}\n  included from {name}:{line_number}"))?;
    }
    stack.pop();
    Ok(())
}

/// The path of a directive line, None for any other line.
fn directive(line: &str) -> Result<Option<&str>, String> {
    let Some(rest) = line.trim_start().strip_prefix(DIRECTIVE) else {
        return Ok(None);
    };
    let path = rest
        .trim()
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|p| !p.is_empty() && !p.contains('"'))
        .ok_or_else(|| format!("malformed include {line:?}: want {DIRECTIVE}\"path\""))?;
    Ok(Some(path))
}

fn push_line(out: &mut Expanded, line: &str, file: &str, line_number: u32) {
    let expanded_line = out.line_count + 1;
    out.source.push_str(line);
    out.source.push('\n');
    out.line_count = expanded_line;
    let continues = out
        .lines
        .last()
        .is_some_and(|(first, f, l)| f == file && expanded_line - first == line_number - l);
    if !continues {
        out.lines
            .push((expanded_line, file.to_string(), line_number));
    }
}

/// The original (file, line) of expanded line `line` (1-based) under `lines`.
pub fn locate<S: AsRef<str>>(lines: &[LineRun<S>], line: u32) -> Option<(&str, u32)> {
    let at = lines.partition_point(|(first, _, _)| *first <= line);
    let (first, file, original) = lines.get(at.checked_sub(1)?)?;
    Some((file.as_ref(), original + (line - first)))
}
