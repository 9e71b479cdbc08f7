//! The process environment the graphics drivers read when the wgpu instance is created.
//!
//! On a headless Linux machine XDG_RUNTIME_DIR is often unset (no login session). Mesa's Vulkan
//! and GL drivers then try their Wayland window-system support, and libwayland prints
//! `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` (twice per instance, four
//! lines per rbnn command) although nothing failed. A user reads "error" and thinks rbnn did.
//! rbnn never opens a window, so before the first instance it points the variable at a private
//! directory of its own (mode 0700, owned by the user, in the temporary directory) when it is
//! unset or invalid, as a login session would.

use std::path::{Path, PathBuf};
use std::sync::Once;

/// Sets XDG_RUNTIME_DIR to rbnn's private runtime directory when it is unset or does not name
/// an existing absolute directory. Runs once per process; call it before any thread that reads
/// the environment starts (first thing in `main`): `Gpu::new` calls it too, for programs that
/// do not.
pub fn prepare() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let current = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
        if current.as_deref().is_some_and(is_valid_runtime_dir) {
            return;
        }
        if let Some(dir) = private_runtime_dir() {
            std::env::set_var("XDG_RUNTIME_DIR", dir);
        }
    });
}

/// What libwayland and Mesa accept: an absolute path to an existing directory.
pub fn is_valid_runtime_dir(path: &Path) -> bool {
    path.is_absolute() && path.is_dir()
}

/// $TMPDIR/rbnn-runtime-UID, created with mode 0700; None when it exists but belongs to
/// someone else or is open to others (then the variable stays as it was).
#[cfg(unix)]
fn private_runtime_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("rbnn-runtime-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    (meta.is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0).then_some(dir)
}

#[cfg(not(unix))]
fn private_runtime_dir() -> Option<PathBuf> {
    None
}
