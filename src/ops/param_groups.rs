//! Parameter groups of the optimizer kernels (shaders/common/param_groups.wgsl): every element of
//! a parameter arena belongs to one group, and each group multiplies the step's learning rate
//! and weight decay by its own scales. One dispatch still updates the whole arena; a group of
//! scales (1, 1) is the plain optimizer, bit for bit (a product with 1 is exact).

use super::shape::expect_u32;
use crate::gpu::{Gpu, Tensor};
use anyhow::{bail, Result};

/// The multipliers of one group (mirrors WGSL `GroupScales`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupScale {
    /// Multiplies the learning rate.
    pub lr: f32,
    /// Multiplies the weight decay (0: no decay).
    pub decay: f32,
}

impl GroupScale {
    /// The plain optimizer: the learning rate and the weight decay as given.
    pub const ONE: GroupScale = GroupScale {
        lr: 1.0,
        decay: 1.0,
    };
}

/// The groups of an arena on the GPU: `index` (u32 per element) and `scales` (two f32 per group).
pub struct ParamGroups {
    pub index: Tensor,
    pub scales: Tensor,
    /// Elements covered (the arena's length).
    pub len: usize,
    pub groups: usize,
}

impl ParamGroups {
    /// Groups from a per-element group index and each group's scales. Fails when an index names
    /// no group or a scale is not a finite number >= 0.
    pub fn new(gpu: &Gpu, index: &[u32], scales: &[GroupScale]) -> Result<ParamGroups> {
        if scales.is_empty() {
            bail!("parameter groups: no group scales given");
        }
        if let Some((i, g)) = index
            .iter()
            .enumerate()
            .find(|(_, &g)| g as usize >= scales.len())
        {
            bail!(
                "parameter groups: element {i} is in group {g}, but only {} groups have scales",
                scales.len()
            );
        }
        if let Some(s) = scales
            .iter()
            .find(|s| !(s.lr.is_finite() && s.lr >= 0.0 && s.decay.is_finite() && s.decay >= 0.0))
        {
            bail!("parameter groups: scales must be finite and >= 0, got {s:?}");
        }
        expect_u32(index.len(), "parameter group elements")?;
        let flat: Vec<f32> = scales.iter().flat_map(|s| [s.lr, s.decay]).collect();
        Ok(ParamGroups {
            index: gpu.upload_u32("parameter group of each element", &[index.len()], index),
            scales: gpu.upload_f32("parameter group scales", &[scales.len(), 2], &flat),
            len: index.len(),
            groups: scales.len(),
        })
    }

    /// One group of scales (1, 1) over `len` elements: the plain optimizer.
    pub fn uniform(gpu: &Gpu, len: usize) -> Result<ParamGroups> {
        ParamGroups::new(gpu, &vec![0; len], &[GroupScale::ONE])
    }

    /// Fails unless the groups cover exactly `len` elements (the arena being stepped).
    pub fn expect_len(&self, len: usize, what: &str) -> Result<()> {
        if self.len != len {
            bail!(
                "{what}: parameter groups cover {} elements, the arena has {len}",
                self.len
            );
        }
        Ok(())
    }
}

/// Plain-Rust helpers of the optimizer references.
pub mod cpu {
    use super::GroupScale;

    /// The scales of every element: `scales[index[i]]`.
    pub fn per_element(index: &[u32], scales: &[GroupScale]) -> Vec<GroupScale> {
        index.iter().map(|&g| scales[g as usize]).collect()
    }
}
