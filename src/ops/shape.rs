//! Shape checks shared by the op wrappers, so a mismatched tensor fails with its label and both
//! shapes instead of reading out of bounds on the GPU.

use crate::gpu::Tensor;
use anyhow::{bail, Result};

/// Fails unless `t` holds exactly `len` elements.
pub fn expect_len(t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.len() != len {
        bail!(
            "{what}: tensor {} has shape {:?} ({} elements), expected {len} elements",
            t.label,
            t.shape,
            t.len()
        );
    }
    Ok(())
}

/// Fails unless `t` has exactly `shape`.
pub fn expect_shape(t: &Tensor, shape: &[usize], what: &str) -> Result<()> {
    if t.shape != shape {
        bail!(
            "{what}: tensor {} has shape {:?}, expected {shape:?}",
            t.label,
            t.shape
        );
    }
    Ok(())
}

/// Fails unless `t` has at least `len` elements (workspaces may be shared and oversized).
pub fn expect_at_least(t: &Tensor, len: usize, what: &str) -> Result<()> {
    if t.len() < len {
        bail!(
            "{what}: workspace {} has {} elements, needs at least {len}",
            t.label,
            t.len()
        );
    }
    Ok(())
}

/// Fails unless a count fits the u32 index arithmetic of the shaders.
pub fn expect_u32(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| anyhow::anyhow!("{what}: {n} exceeds the u32 index range"))
}
