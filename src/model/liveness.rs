//! Buffers shared by a network's tensors whose lifetimes do not overlap. One training step runs
//! its dispatches in a fixed order, so each tensor the network builder makes (activations,
//! gradients, BatchNorm statistics and partials) is in use from the first dispatch that binds it
//! to the last; two tensors whose spans are disjoint can live in the same buffer. Most
//! gradients live only between two neighbouring backward ops, and so do the forward outputs
//! that no backward reads, so a few buffers hold them all.
//!
//! Safe by construction: tensors sharing a buffer are never bound by the same dispatch (their
//! spans are disjoint), and a tensor is shared only if the first dispatch that binds it may
//! write it (every kernel overwrites its outputs), so no step reads what another tensor left.
//! Tensors the host reads after a step (`keep`) get their own buffers.

use crate::gpu::{Dispatch, Gpu, Tensor};
use anyhow::Result;
use std::collections::HashMap;

/// The tensors a network builder made: (label, shape), in order.
pub type MadeTensors = Vec<(String, Vec<usize>)>;

/// Views into the shared buffers, by tensor label.
#[derive(Default)]
pub struct SharedBuffers {
    views: HashMap<String, Tensor>,
}

/// One shared buffer being planned: its size and the last dispatch its tensors use.
struct Slot {
    elems: usize,
    last: usize,
    members: Vec<usize>,
}

impl SharedBuffers {
    /// The view standing for the tensor `label`, if it shares a buffer.
    pub fn view(&self, label: &str) -> Option<&Tensor> {
        self.views.get(label)
    }

    /// Plans and allocates on `gpu` the buffers of the tensors `made` ((label, shape) in the
    /// order the builder made them) from `step`: one step's dispatches in record order, built
    /// on a memory planner (which records what each dispatch binds).
    pub fn plan(
        gpu: &Gpu,
        made: &[(String, Vec<usize>)],
        step: &[&Dispatch],
        keep: &[&str],
    ) -> Result<SharedBuffers> {
        let index: HashMap<&str, usize> = made
            .iter()
            .enumerate()
            .map(|(i, (label, _))| (label.as_str(), i))
            .collect();
        // (first use, last use, whether the first use may write) of each tensor made.
        let mut spans: Vec<Option<(usize, usize, bool)>> = vec![None; made.len()];
        for (t, d) in step.iter().enumerate() {
            for (label, read_only) in &d.binds {
                let Some(&i) = index.get(label.as_str()) else {
                    continue;
                };
                let span = spans[i].get_or_insert((t, t, false));
                span.1 = t;
                if span.0 == t && !read_only {
                    span.2 = true;
                }
            }
        }
        let mut shared: Vec<(usize, usize, usize)> = spans
            .iter()
            .enumerate()
            .filter_map(|(i, span)| match span {
                Some((first, last, true)) if !keep.contains(&made[i].0.as_str()) => {
                    Some((*first, *last, i))
                }
                _ => None,
            })
            .collect();
        shared.sort();
        let mut slots: Vec<Slot> = Vec::new();
        for (first, last, i) in shared {
            let elems = made[i].1.iter().product::<usize>().max(1);
            let free = slots.iter().enumerate().filter(|(_, s)| s.last < first);
            // The smallest free buffer that holds it, else the largest free one (grown).
            let fitting = free
                .clone()
                .filter(|(_, s)| s.elems >= elems)
                .min_by_key(|(_, s)| s.elems);
            let chosen = fitting
                .or_else(|| free.max_by_key(|(_, s)| s.elems))
                .map(|(k, _)| k);
            let k = match chosen {
                Some(k) => k,
                None => {
                    slots.push(Slot {
                        elems: 0,
                        last: 0,
                        members: Vec::new(),
                    });
                    slots.len() - 1
                }
            };
            let slot = &mut slots[k];
            slot.elems = slot.elems.max(elems);
            slot.last = last;
            slot.members.push(i);
        }
        let mut views = HashMap::new();
        for (k, slot) in slots.iter().enumerate() {
            let buffer = gpu.try_tensor(&format!("shared activations #{k}"), &[slot.elems])?;
            for &i in &slot.members {
                let (label, shape) = &made[i];
                let view = Tensor {
                    shape: shape.clone(),
                    label: label.clone(),
                    ..buffer.clone()
                };
                views.insert(label.clone(), view);
            }
        }
        Ok(SharedBuffers { views })
    }
}
