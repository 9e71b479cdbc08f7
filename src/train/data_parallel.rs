//! The trainer's hook between the backward and the optimizer: gradient accumulation over
//! micro-batches (`--accumulate`) and the sum over the ranks of a data-parallel run (MPI), plus
//! the checks that keep the ranks training one model.
//!
//! One optimizer step takes one global batch of `--batch-size` samples, cut into P = N x A
//! contiguous parts (`data::Shard`) for N ranks of A micro-batches each: rank r runs parts
//! r*A..(r+1)*A, one forward and backward each, with BatchNorm statistics of that part alone (as
//! the official DataParallel runs keep them per GPU). Each part's loss is the mean over its
//! samples, and the step's gradient is the mean over the parts:
//!   g = (((g_0 + g_1) + ...) + g_{P-1}) * (1/P)  in f32, parts added in order, scaled once.
//! With one rank the micro-batches are summed on the GPU (ops::grad_accumulate) and the optimizer
//! runs in the last micro-batch's pass. With several, each rank sums its micro-batches on the GPU
//! (unscaled), the arena is read back once, summed over ranks in rank order and scaled
//! (`Cluster::sum_in_rank_order`), written back once, and the optimizer runs in a submit of its
//! own. The two orders coincide whenever A = 1 or N = 1, so two ranks of batch B give the weights
//! of one process accumulating two micro-batches of B, bit for bit.

use crate::data::Shard;
use crate::distributed::{fingerprint, reduce, Cluster};
use crate::gpu::{Dispatch, Gpu, Readback, Tensor};
use crate::model::Params;
use crate::ops::grad_accumulate::{self, Accumulate};
use crate::ops::loss::LossTotals;
use crate::train::config::Config;
use anyhow::{bail, Result};

/// The GPU side of `--accumulate`: the running sum and its three dispatches.
struct Accumulator {
    _sum: Tensor,
    store: Dispatch,
    add: Dispatch,
    finish: Dispatch,
}

pub struct DataParallel<'a> {
    cluster: &'a Cluster,
    accumulate: usize,
    accumulator: Option<Accumulator>,
    /// Several ranks: the gradient arena's staging buffer, its host copy, the arena itself.
    readback: Option<Readback>,
    host: Vec<f32>,
    grads: Tensor,
}

impl<'a> DataParallel<'a> {
    pub fn new(
        gpu: &Gpu,
        params: &Params,
        cluster: &'a Cluster,
        accumulate: usize,
    ) -> Result<DataParallel<'a>> {
        if accumulate == 0 {
            bail!("--accumulate must be at least 1");
        }
        let ranks = cluster.size();
        let accumulator = if accumulate > 1 {
            let sum = gpu.try_tensor("accumulated gradients", &params.grads.shape)?;
            // One rank finishes the mean here; several scale once, after the sum over ranks.
            let scale = match ranks {
                1 => reduce::mean_scale(accumulate),
                _ => 1.0,
            };
            let make = |what| grad_accumulate::dispatch(gpu, what, &params.grads, &sum, scale);
            Some(Accumulator {
                store: make(Accumulate::Store)?,
                add: make(Accumulate::Add)?,
                finish: make(Accumulate::Finish)?,
                _sum: sum.clone(),
            })
        } else {
            None
        };
        Ok(DataParallel {
            cluster,
            accumulate,
            accumulator,
            readback: (ranks > 1).then(|| Readback::new(gpu, &params.grads)),
            host: Vec::new(),
            grads: params.grads.clone(),
        })
    }

    /// Micro-batches per optimizer step on this rank.
    pub fn micro_batches(&self) -> usize {
        self.accumulate
    }

    /// The parts of every global batch that this rank trains on.
    pub fn shard(&self) -> Shard {
        Shard {
            parts: self.cluster.size() * self.accumulate,
            first: self.cluster.rank() * self.accumulate,
            count: self.accumulate,
        }
    }

    /// The sizes of this rank's micro-batches over an epoch of `images` samples with a
    /// --batch-size of `batch_size` (the global batch; the whole split when smaller), in order of
    /// first use, and whether the last partial batch is kept. The official loader keeps it, and
    /// BatchNorm's statistics then come from its smaller parts; a part of one sample cannot train
    /// BatchNorm, so the batch is dropped when a part would hold fewer than 2. Refuses a split
    /// that leaves a full batch's parts so small (or uneven: `check_split`).
    pub fn micro_batch_sizes(
        &self,
        batch_size: usize,
        images: usize,
    ) -> Result<(Vec<usize>, bool)> {
        let (ranks, accumulate) = (self.cluster.size(), self.accumulate);
        check_split(batch_size, ranks, accumulate)?;
        let shard = self.shard();
        let global = batch_size.min(images);
        if shard.parts > 1 && shard.smallest_part(global) < 2 {
            bail!(
                "the global batch, cut to the {global} training images, split into {} leaves {} \
                 sample(s) per micro-batch; BatchNorm needs at least 2: use more training images \
                 or fewer micro-batches",
                describe_split(ranks, accumulate),
                shard.smallest_part(global)
            );
        }
        let tail = images % global;
        let keep_tail = tail > 0 && shard.smallest_part(tail) >= 2;
        let mut sizes = shard.own_sizes(global);
        if keep_tail {
            sizes.extend(shard.own_sizes(tail));
        }
        let mut distinct = Vec::new();
        for size in sizes {
            if !distinct.contains(&size) {
                distinct.push(size);
            }
        }
        Ok((distinct, keep_tail))
    }

    /// Records, after micro-batch `micro`'s backward (in its pass), what adds its gradient to
    /// the step's.
    pub fn record_after_backward(&self, pass: &mut wgpu::ComputePass<'_>, micro: usize) {
        let Some(a) = &self.accumulator else { return };
        let dispatch = match micro {
            0 => &a.store,
            m if m + 1 == self.accumulate => &a.finish,
            _ => &a.add,
        };
        dispatch.record(pass);
    }

    /// Whether the optimizer is recorded into micro-batch `micro`'s pass: with one rank, after
    /// the last micro-batch; with several, never (it runs after the sum over ranks).
    pub fn optimizer_in_pass(&self, micro: usize) -> bool {
        self.cluster.size() == 1 && micro + 1 == self.accumulate
    }

    /// Records, after micro-batch `micro`'s pass, the copy of the gradient arena for the sum over
    /// ranks (after the last micro-batch, with several ranks).
    pub fn record_readback(&self, encoder: &mut wgpu::CommandEncoder, micro: usize) {
        if let Some(r) = &self.readback {
            if micro + 1 == self.accumulate {
                r.record(encoder);
            }
        }
    }

    /// After the last micro-batch's submit, with several ranks: reads the gradient arena back,
    /// replaces it by the mean over ranks (fixed order) and writes it back. Returns whether it
    /// did, i.e. whether the optimizer must now be submitted on its own.
    pub fn sum_over_ranks(&mut self, gpu: &Gpu) -> Result<bool> {
        let Some(r) = &self.readback else {
            return Ok(false);
        };
        // Copied out of the mapped staging buffer into ordinary memory first: MPI may register
        // its buffers for RDMA, which driver-mapped memory does not always allow.
        r.read_into(gpu, &mut self.host)?;
        let scale = reduce::mean_scale(self.shard().parts);
        self.cluster.sum_in_rank_order(&mut self.host, scale)?;
        gpu.write(&self.grads, &self.host);
        Ok(true)
    }

    /// True on every rank when `stop` is true on some rank, so all stop after the same step.
    pub fn any_rank(&self, stop: bool) -> bool {
        self.cluster.any(stop)
    }

    /// Loss and accuracy totals summed over ranks (in rank order).
    pub fn sum_totals(&self, local: LossTotals) -> Result<LossTotals> {
        if self.cluster.size() == 1 {
            return Ok(local);
        }
        let mut mine = Vec::new();
        mine.extend(local.loss_sum.to_le_bytes());
        for count in [local.top1, local.top5, local.samples] {
            mine.extend(count.to_le_bytes());
        }
        let mut sum = LossTotals {
            loss_sum: 0.0,
            top1: 0,
            top5: 0,
            samples: 0,
        };
        for theirs in self.cluster.all_gather_bytes(&mine) {
            let word = |i: usize| -> Result<[u8; 8]> {
                Ok(theirs
                    .get(i * 8..i * 8 + 8)
                    .ok_or_else(|| anyhow::anyhow!("a rank sent malformed loss totals"))?
                    .try_into()?)
            };
            sum.loss_sum += f64::from_le_bytes(word(0)?);
            sum.top1 += u64::from_le_bytes(word(1)?);
            sum.top5 += u64::from_le_bytes(word(2)?);
            sum.samples += u64::from_le_bytes(word(3)?);
        }
        Ok(sum)
    }

    /// Checks, before training, that every rank runs the same training config (the data path may
    /// differ between machines) on datasets of the same sizes.
    pub fn check_same_run(
        &self,
        cfg: &Config,
        train_images: usize,
        test_images: usize,
    ) -> Result<()> {
        let mut items = Vec::new();
        if let serde_json::Value::Object(fields) = serde_json::to_value(cfg)? {
            for (name, value) in fields {
                if name != "data_path" {
                    items.push((name, value.to_string().into_bytes()));
                }
            }
        }
        items.push((
            "training images".into(),
            train_images.to_string().into_bytes(),
        ));
        items.push(("test images".into(), test_images.to_string().into_bytes()));
        self.cluster.check_same("training configs", &items)
    }

    /// Checks, after a rotation update, that every rank computed the same R1 and R2 for every
    /// binary conv layer (a rank whose rotations differ trains another model: a bug, or adapters
    /// that compute differently).
    pub fn check_same_rotations(
        &self,
        gpu: &Gpu,
        params: &Params,
        layers: &[String],
        epoch: usize,
    ) -> Result<()> {
        if self.cluster.size() == 1 {
            return Ok(());
        }
        let state = gpu.read_f32(&params.state)?;
        let mut items = Vec::new();
        for layer in layers {
            for r in ["R1", "R2"] {
                let name = format!("{layer}.{r}");
                let t = params.get(&name)?;
                let start = (t.offset / 4) as usize;
                let values = &state[start..start + t.len()];
                items.push((name, fingerprint(bytemuck::cast_slice(values))));
            }
        }
        self.cluster.check_same(
            &format!(
                "the rotations R1/R2 after the rotation update of epoch {}",
                epoch + 1
            ),
            &items,
        )
    }

    /// Checks that every rank holds the same parameters and momentum buffers (`when`: "after
    /// epoch 3").
    pub fn check_same_weights(&self, gpu: &Gpu, params: &Params, when: &str) -> Result<()> {
        if self.cluster.size() == 1 {
            return Ok(());
        }
        let mut items = Vec::new();
        for (what, arena) in [
            ("parameters", &params.trainable),
            ("momentum buffers", &params.momentum),
        ] {
            let values = gpu.read_f32(arena)?;
            items.push((what.to_string(), fingerprint(bytemuck::cast_slice(&values))));
        }
        self.cluster
            .check_same(&format!("the parameters {when}"), &items)
    }

    /// `error`, marked as raised by every rank at once (`Cluster::agreed`).
    pub fn agreed(&self, error: anyhow::Error) -> anyhow::Error {
        self.cluster.agreed(error)
    }
}

/// "2 ranks x --accumulate 3 = 6 micro-batches".
fn describe_split(ranks: usize, accumulate: usize) -> String {
    format!(
        "{ranks} rank{} x --accumulate {accumulate} = {} micro-batches",
        if ranks == 1 { "" } else { "s" },
        ranks * accumulate
    )
}

/// Refuses, before anything is set up, a --batch-size (the global batch of one optimizer step)
/// that does not split evenly into `ranks` x `accumulate` micro-batches of at least 2 samples.
pub fn check_split(batch_size: usize, ranks: usize, accumulate: usize) -> Result<()> {
    let parts = ranks * accumulate;
    if parts <= 1 {
        return Ok(());
    }
    if !batch_size.is_multiple_of(parts) || batch_size / parts < 2 {
        bail!(
            "--batch-size {batch_size} is the global batch of one optimizer step; it must split \
             evenly into {} of at least 2 samples each (BatchNorm): give a multiple of {parts}, \
             at least {}",
            describe_split(ranks, accumulate),
            2 * parts
        );
    }
    Ok(())
}
