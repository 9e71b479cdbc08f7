//! Run directories: where a training run writes, and the rules that keep every run's work.
//!
//! - A directory that already holds a run (any of [`RUN_FILES`]) is only written by resuming that
//!   run (`Existing::Resume` with a checkpoint inside it) or by replacing it on request
//!   (`Existing::Overwrite`, which removes the old run's files first). Otherwise opening it fails,
//!   naming what is there and the three ways on.
//! - A run holds the directory's lock file (`train.lock`, with its PID) for its whole life: a
//!   second process opening the same directory fails at once, naming the holder. The lock is an
//!   OS file lock, released by the OS when its process dies, so a lock file left by a killed run
//!   is recognised as stale and taken over.
//! - [`RunDir::numbered`] makes a new `ROOT/run-NNN` for every run (the default of `rbnn train`),
//!   and points the symlink `ROOT/latest` at it once it has finished an epoch (so
//!   `runs/latest/last.safetensors` always exists); a run that fails before writing anything
//!   leaves no empty directory behind.

use crate::train::checkpoint;
use anyhow::{anyhow, bail, Context, Result};
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The files a run writes. A directory holding any of them holds a run.
pub const RUN_FILES: [&str; 5] = [
    "last.safetensors",
    "best.safetensors",
    "interrupted.safetensors",
    "metrics.jsonl",
    "curves.png",
];

/// The lock file: the PID of the process training into the directory.
pub const LOCK_FILE: &str = "train.lock";

/// Where a run writes: last.safetensors (resume point, every epoch), best.safetensors,
/// interrupted.safetensors (Ctrl-C or SIGTERM), metrics.jsonl, curves.png.
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }
    pub fn interrupted(&self) -> PathBuf {
        self.dir.join("interrupted.safetensors")
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }
    pub fn curves(&self) -> PathBuf {
        self.dir.join("curves.png")
    }
}

/// What opening a directory that already holds a run may do.
#[derive(Clone, Debug, PartialEq)]
pub enum Existing {
    /// Fail, naming the run that is there.
    Refuse,
    /// Continue the run of this checkpoint, which must lie in the directory (when the directory
    /// holds a run at all).
    Resume(PathBuf),
    /// Remove the old run's files and start afresh.
    Overwrite,
}

/// An open run directory: the paths of its files and its lock, held until drop.
pub struct RunDir {
    pub files: RunFiles,
    /// What the user should know: a stale lock taken over, an old run replaced.
    pub notes: Vec<String>,
    lock: Option<RunLock>,
    /// `ROOT/latest`, for a numbered run: pointed at this run after its first epoch.
    latest: Option<PathBuf>,
    linked: AtomicBool,
    /// Made by `numbered`: removed again on drop if the run wrote nothing.
    created: bool,
}

impl RunDir {
    /// Opens (creating it if needed) `dir` for a run, applying `existing` when it already holds
    /// one, and takes its lock.
    pub fn open(dir: &Path, existing: Existing) -> Result<RunDir> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create run directory {}", dir.display()))?;
        let lock = RunLock::acquire(dir)?;
        let mut notes = Vec::new();
        if let Some(pid) = &lock.stale_pid {
            notes.push(format!(
                "{} was left by process {pid}, which is no longer running; taken over",
                lock.path.display()
            ));
        }
        let found = run_files_in(dir);
        if !found.is_empty() {
            match &existing {
                Existing::Refuse => bail!(
                    "{} already holds a run: {}. Nothing was changed. To continue it: rbnn train \
                     --resume {}; to keep it and start another run: give another --out (or none: \
                     every run then gets a new runs/run-NNN); to replace it: --overwrite",
                    dir.display(),
                    describe_run(dir, &found),
                    dir.join("last.safetensors").display()
                ),
                Existing::Resume(checkpoint) if !is_inside(checkpoint, dir) => bail!(
                    "{} already holds another run ({}); --resume {} continues a run in the \
                     checkpoint's own directory: leave out --out, or give an --out that holds no run",
                    dir.display(),
                    describe_run(dir, &found),
                    checkpoint.display()
                ),
                Existing::Resume(_) => {}
                Existing::Overwrite => {
                    for name in &found {
                        let path = dir.join(name);
                        fs::remove_file(&path)
                            .with_context(|| format!("--overwrite: cannot remove {}", path.display()))?;
                    }
                    notes.push(format!(
                        "--overwrite: removed the previous run's {} from {}",
                        found.join(", "),
                        dir.display()
                    ));
                }
            }
        }
        Ok(RunDir {
            files: RunFiles {
                dir: dir.to_path_buf(),
            },
            notes,
            lock: Some(lock),
            latest: None,
            linked: AtomicBool::new(false),
            created: false,
        })
    }

    /// A new directory `root/run-NNN` (one past the highest number there) for a fresh run.
    /// `root/latest` will point at it once it has finished an epoch.
    pub fn numbered(root: &Path) -> Result<RunDir> {
        fs::create_dir_all(root)
            .with_context(|| format!("cannot create the runs folder {}", root.display()))?;
        let highest = fs::read_dir(root)
            .with_context(|| format!("cannot list {}", root.display()))?
            .filter_map(|e| run_number(&e.ok()?.file_name().to_string_lossy()))
            .max()
            .unwrap_or(0);
        let mut number = highest + 1;
        let dir = loop {
            let dir = root.join(format!("run-{number:03}"));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                // Taken by a run started at the same moment.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", dir.display()))
                }
            }
        };
        let mut run = RunDir::open(&dir, Existing::Refuse)?;
        run.created = true;
        run.latest = Some(root.join("latest"));
        Ok(run)
    }

    pub fn dir(&self) -> &Path {
        &self.files.dir
    }

    /// To be called after every epoch's last.safetensors: the first time, a numbered run becomes
    /// `latest`. A failure to link is reported, not fatal (the run itself is intact).
    pub fn epoch_saved(&self) {
        let Some(link) = &self.latest else { return };
        if self.linked.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Err(e) = point_link(link, self.dir()) {
            eprintln!(
                "warning: could not point {} at {}: {e:#}",
                link.display(),
                self.dir().display()
            );
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Lock file first (removed, then unlocked as the file closes), then the directory if the
        // run made it and wrote nothing: remove_dir fails on a directory that is not empty.
        self.lock.take();
        if self.created {
            let _ = fs::remove_dir(self.dir());
        }
    }
}

/// "run-012" -> 12.
fn run_number(name: &str) -> Option<u32> {
    name.strip_prefix("run-")?.parse().ok()
}

/// The run files present in `dir`, in RUN_FILES order.
fn run_files_in(dir: &Path) -> Vec<String> {
    RUN_FILES
        .iter()
        .filter(|f| dir.join(f).exists())
        .map(|f| f.to_string())
        .collect()
}

/// "last.safetensors (epoch 3 of 10), best.safetensors, metrics.jsonl".
fn describe_run(dir: &Path, found: &[String]) -> String {
    found
        .iter()
        .map(|name| {
            let progress = name
                .ends_with(".safetensors")
                .then(|| checkpoint::read_metadata(&dir.join(name)).ok())
                .flatten()
                .and_then(|meta| {
                    let info = checkpoint::CheckpointInfo::from_metadata(&meta, &dir.join(name));
                    info.ok()
                })
                .map(|info| format!(" (epoch {} of {})", info.epoch, info.config.epochs));
            format!("{name}{}", progress.unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `file` lies directly in `dir` (both resolved, so runs/latest/last.safetensors lies in
/// runs/run-003).
fn is_inside(file: &Path, dir: &Path) -> bool {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), dir.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Replaces `link` by a symlink to `target` (relative to the link's folder) in one rename. An
/// existing real directory at `link` (from an rbnn whose default run directory it was) is left
/// alone.
fn point_link(link: &Path, target: &Path) -> Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link) {
        if !meta.file_type().is_symlink() {
            bail!(
                "{} exists and is not a symlink; left as it is",
                link.display()
            );
        }
    }
    let name = target
        .file_name()
        .ok_or_else(|| anyhow!("{} has no name", target.display()))?;
    let folder = link.parent().unwrap_or(Path::new("."));
    let temporary = folder.join(format!(".latest-{}", std::process::id()));
    let _ = fs::remove_file(&temporary);
    symlink_dir(Path::new(name), &temporary)?;
    fs::rename(&temporary, link).map_err(|e| {
        let _ = fs::remove_file(&temporary);
        anyhow!(e)
    })?;
    Ok(())
}

#[cfg(unix)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink_dir(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_dir(target, link)
}

#[cfg(not(any(unix, windows)))]
fn symlink_dir(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The lock of a run directory: `train.lock`, holding the PID, OS-locked while the run lives.
struct RunLock {
    path: PathBuf,
    file: fs::File,
    /// The PID a previous, dead holder left in the file.
    stale_pid: Option<String>,
}

impl RunLock {
    fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        // A holder that finishes removes the file before unlocking it: the file locked here may
        // then no longer be the one at `path`; try again with the new one.
        for _ in 0..10 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lock file {}", path.display()))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = read_pid(&mut file).unwrap_or_else(|| "unknown".into());
                    bail!(
                        "{} is in use: rbnn process {holder} is training into it (lock file {}). \
                         Wait for it to finish or stop it, or give another --out",
                        dir.display(),
                        path.display()
                    );
                }
                Err(fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            if !is_file_at(&file, &path) {
                continue;
            }
            let stale_pid = read_pid(&mut file);
            let pid = std::process::id().to_string();
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(format!("{pid}\n").as_bytes()))
                .and_then(|_| file.sync_data())
                .with_context(|| format!("cannot write {}", path.display()))?;
            return Ok(RunLock {
                path,
                file,
                stale_pid: stale_pid.filter(|p| *p != pid),
            });
        }
        bail!(
            "cannot lock {}: it keeps being replaced by other processes",
            path.display()
        )
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

fn read_pid(file: &mut fs::File) -> Option<String> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    let pid = text.trim();
    (!pid.is_empty()).then(|| pid.to_string())
}

/// Whether the open `file` is the file now at `path`.
#[cfg(unix)]
fn is_file_at(file: &fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_file_at(_file: &fs::File, path: &Path) -> bool {
    path.exists()
}
