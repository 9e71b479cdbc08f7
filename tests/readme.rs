//! The READMEs name only files that exist in the repository: every path in a command, inline
//! code or link that starts in one of the repository's folders, every `--example NAME` and
//! `--test NAME` of a cargo command, and nothing outside the repository (`../`), so a fresh
//! clone can follow them verbatim.

use std::path::{Path, PathBuf};

/// Top-level entries of the repository that README paths start from.
const REPOSITORY_ROOTS: [&str; 12] = [
    "src",
    "tests",
    "tools",
    "scripts",
    "examples",
    "shaders",
    "docs",
    "assets",
    "data",
    ".ci",
    "build.rs",
    "Cargo.toml",
];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every README.md of the repository (not under target/ or hidden folders).
fn readmes(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "runs" {
                readmes(&path, found);
            }
        } else if name == "README.md" {
            found.push(path);
        }
    }
}

/// The pieces of `text` that can name files: the lines of fenced code blocks, prose lines,
/// inline code spans, and link targets, each with its line number.
fn pieces(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            // A comment after the command is prose.
            let command = match line.find(" #") {
                Some(at) => &line[..at],
                None => line,
            };
            out.push((n, command.to_string()));
            continue;
        }
        // Prose names files too ("the golden tensors in tests/golden").
        out.push((n, line.replace('`', " ")));
        for (k, span) in line.split('`').enumerate() {
            if k % 2 == 1 {
                out.push((n, span.to_string()));
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let target = &rest[at + 2..];
            let end = target.find(')').unwrap_or(target.len());
            out.push((n, target[..end].to_string()));
            rest = &target[end..];
        }
    }
    out
}

/// What is wrong with the files `piece` names, if anything.
fn problems(piece: &str) -> Vec<String> {
    let root = repository();
    let words: Vec<&str> = piece.split_whitespace().collect();
    let mut found = Vec::new();
    for (i, raw) in words.iter().enumerate() {
        let word = raw
            .trim_start_matches(|c: char| "\"'([".contains(c))
            .trim_end_matches(|c: char| "\"'),;:].".contains(c));
        if word.contains("../") {
            found.push(format!("{word}: outside the repository"));
            continue;
        }
        let next = words
            .get(i + 1)
            .map(|w| w.trim_matches(|c: char| "\"',;".contains(c)));
        match (word, next) {
            ("--example", Some(name)) if !root.join(format!("examples/{name}.rs")).is_file() => {
                found.push(format!("--example {name}: no examples/{name}.rs"))
            }
            ("--test", Some(name))
                if words.contains(&"cargo") && !root.join(format!("tests/{name}.rs")).is_file() =>
            {
                found.push(format!("--test {name}: no tests/{name}.rs"))
            }
            _ => {}
        }
        let path = word.strip_prefix("./").unwrap_or(word);
        let first = path.split('/').next().unwrap_or("");
        let named =
            REPOSITORY_ROOTS.contains(&first) && (path.contains('/') || first.contains('.'));
        // Placeholders (OUT_DIR, DIR) and globs stand for files the reader picks.
        let placeholder = path.contains('*') || path.chars().any(|c| c.is_ascii_uppercase());
        if named && !placeholder && !root.join(path).exists() {
            found.push(format!("{path}: no such file or folder in the repository"));
        }
    }
    found
}

#[test]
fn readmes_name_only_files_that_exist() {
    let mut files = Vec::new();
    readmes(&repository(), &mut files);
    assert!(files.contains(&repository().join("README.md")), "{files:?}");
    let mut failures = std::collections::BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, piece) in pieces(&text) {
            for p in problems(&piece) {
                failures.insert(format!("{}:{line}: {p}", file.display()));
            }
        }
    }
    let failures: Vec<String> = failures.into_iter().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_check_finds_what_it_looks_for() {
    // Guards against a check that cannot fail.
    assert!(!problems("scripts/get-cifar10 DIR")
        .iter()
        .any(|p| p.contains("get-cifar10")));
    assert_eq!(problems("../outside/tools/get-cifar10 DIR").len(), 1);
    assert_eq!(problems("scripts/no-such-script DIR").len(), 1);
    assert_eq!(
        problems("cargo run --release --example classifier").len(),
        0
    );
    assert_eq!(
        problems("cargo run --release --example no_such_example").len(),
        1
    );
    assert_eq!(problems("cargo test --release --test golden").len(), 0);
    assert_eq!(
        problems("cargo test --release --test no_such_test").len(),
        1
    );
    assert_eq!(
        problems("rbnn eval --checkpoint runs/latest/best.safetensors").len(),
        0
    );
    assert_eq!(problems("tests/golden/README.md").len(), 0);
    let text = "see `tools/missing.py` and [the curves](docs/missing.png)\n```sh\n\
                tools/also-missing.py  # comment naming tools/not-checked.py\n```\n";
    let found: Vec<String> = pieces(text).iter().flat_map(|(_, p)| problems(p)).collect();
    // The prose line's file is found twice (in the line and in its span), the link's once.
    assert_eq!(found.len(), 4, "{found:?}");
}
