//! Batches of normalised f32 NCHW images and u32 labels, made a few batches ahead on a
//! background thread so the GPU never waits for data.
//!
//! Determinism: the order of epoch e is a Fisher-Yates shuffle seeded by (seed, e), and the crop
//! and flip of a sample by (seed, e, its index in the dataset); nothing depends on thread timing,
//! the batch size or where a run started, so a run resumed at epoch e sees exactly the batches
//! of an uninterrupted one. Like the official loader (drop_last=False) the last partial batch of
//! an epoch is kept unless the plan asks for `drop_last`.
//!
//! Data-parallel training (and gradient accumulation) splits each batch into contiguous parts
//! (`Shard`): a consumer gets only its parts, decoded on its own batcher thread, and which
//! samples a part holds depends only on (seed, epoch, sample, number of parts).

use super::augment::{write_sample, Augment, Crop, Normalizer};
use super::Dataset;
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How the batches of a split are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub batch_size: usize,
    /// A new random order each epoch (else dataset order).
    pub shuffle: bool,
    /// Random crop and flip (else the images as they are).
    pub augment: Option<Augment>,
    /// Skip the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    pub seed: u64,
    /// Batches made ahead of the consumer (the channel bound).
    pub prefetch: usize,
    /// Which parts of each batch this consumer gets (`Shard::WHOLE`: the whole batch).
    pub shard: Shard,
}

/// The parts of every batch one consumer gets. A batch of `len` samples is cut into `parts`
/// contiguous parts, part i holding positions [i*len/parts, (i+1)*len/parts) (so sizes differ by
/// at most one, and only in a last partial batch when `parts` divides the batch size), and the
/// batcher yields parts `first..first + count` of each batch, in order. Rank r of N, accumulating
/// A micro-batches per optimizer step, takes parts r*A..(r+1)*A of N*A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub parts: usize,
    pub first: usize,
    pub count: usize,
}

impl Shard {
    /// The whole batch as one part.
    pub const WHOLE: Shard = Shard {
        parts: 1,
        first: 0,
        count: 1,
    };

    /// Positions of part `part` (0..parts) within a batch of `len` samples.
    pub fn part(&self, len: usize, part: usize) -> Range<usize> {
        part * len / self.parts..(part + 1) * len / self.parts
    }

    /// Sizes of this consumer's parts of a batch of `len` samples, in order.
    pub fn own_sizes(&self, len: usize) -> Vec<usize> {
        (self.first..self.first + self.count)
            .map(|p| self.part(len, p).len())
            .collect()
    }

    /// The smallest part of a batch of `len` samples, over all consumers (BatchNorm needs 2).
    pub fn smallest_part(&self, len: usize) -> usize {
        len / self.parts
    }

    fn check(&self) -> Result<()> {
        if self.parts == 0 || self.count == 0 || self.first + self.count > self.parts {
            bail!(
                "invalid batch shard: parts {}..{} of {}",
                self.first,
                self.first + self.count,
                self.parts
            );
        }
        Ok(())
    }
}

/// Batches made ahead by default: enough to hide a slow batch, little memory (4 CIFAR batches of
/// 256 are 12 MiB).
pub const DEFAULT_PREFETCH: usize = 4;

// Streams of the seed derivation, so the shuffle and the augmentation never share draws.
const SHUFFLE_STREAM: u64 = 1;
const AUGMENT_STREAM: u64 = 2;

/// A seed that depends on every part, through one SplitMix64 step per part.
fn derive_seed(seed: u64, parts: [u64; 3]) -> u64 {
    parts.iter().fold(seed, |h, &p| {
        Rng::new(h ^ p.wrapping_mul(0x9e37_79b9_7f4a_7c15)).next_u64()
    })
}

impl BatchPlan {
    /// Training: shuffled every epoch, random crop with padding 4 and (where the dataset allows)
    /// a random horizontal flip, last partial batch kept.
    pub fn train(ds: &Dataset, batch_size: usize, seed: u64) -> BatchPlan {
        BatchPlan {
            batch_size,
            shuffle: true,
            augment: Some(Augment::for_dataset(ds)),
            drop_last: false,
            seed,
            prefetch: DEFAULT_PREFETCH,
            shard: Shard::WHOLE,
        }
    }

    /// Evaluation: dataset order, no augmentation, last partial batch kept.
    pub fn eval(batch_size: usize) -> BatchPlan {
        BatchPlan {
            batch_size,
            shuffle: false,
            augment: None,
            drop_last: false,
            seed: 0,
            prefetch: DEFAULT_PREFETCH,
            shard: Shard::WHOLE,
        }
    }

    /// Batches in one epoch of `n` samples.
    pub fn batches_per_epoch(&self, n: usize) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// The dataset indices of epoch `epoch`, in the order they are batched.
    pub fn epoch_order(&self, n: usize, epoch: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..n as u32).collect();
        if self.shuffle {
            Rng::new(derive_seed(self.seed, [SHUFFLE_STREAM, epoch as u64, 0])).shuffle(&mut order);
        }
        order
    }

    /// The crop and flip of dataset sample `index` in epoch `epoch`.
    pub fn crop(&self, epoch: usize, index: u32) -> Crop {
        match self.augment {
            Some(aug) => aug.sample(&mut Rng::new(derive_seed(
                self.seed,
                [AUGMENT_STREAM, epoch as u64, index as u64],
            ))),
            None => Crop::IDENTITY,
        }
    }

    /// Fills `batch` with part `part` (see `Shard`) of batch `index` of epoch `epoch`, whose
    /// order is `order` (from `epoch_order`); reuses the batch's buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &self,
        ds: &Dataset,
        norm: &Normalizer,
        order: &[u32],
        epoch: usize,
        index: usize,
        part: usize,
        batch: &mut Batch,
    ) {
        let batch_start = index * self.batch_size;
        let batch_end = (batch_start + self.batch_size).min(order.len());
        let within = self.shard.part(batch_end - batch_start, part);
        let (start, end) = (batch_start + within.start, batch_start + within.end);
        let sample_len = ds.sample_len();
        batch.epoch = epoch;
        batch.index = index;
        batch.indices.clear();
        batch.indices.extend_from_slice(&order[start..end]);
        batch.labels.clear();
        batch
            .labels
            .extend(batch.indices.iter().map(|&i| ds.labels[i as usize]));
        batch.images.resize((end - start) * sample_len, 0.0);
        for (&i, out) in batch
            .indices
            .iter()
            .zip(batch.images.chunks_exact_mut(sample_len))
        {
            write_sample(ds, i as usize, norm, self.crop(epoch, i), out);
        }
    }
}

/// One batch: `images` is [len, c, h, w] normalised f32, `labels` and `indices` (the dataset
/// index of each sample) have `len` entries; the last batch of an epoch may be shorter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub epoch: usize,
    /// Position of the batch in its epoch.
    pub index: usize,
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    pub indices: Vec<u32>,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Iterates over the batches of a range of epochs, made on a background thread.
pub struct Batcher {
    batches: Option<Receiver<Batch>>,
    recycled: SyncSender<Batch>,
    producer: Option<JoinHandle<()>>,
    batches_per_epoch: usize,
    remaining: usize,
}

impl Batcher {
    /// Starts making the batches of `epochs` (e.g. `start..total` for training, `0..1` for one
    /// evaluation pass).
    pub fn new(ds: Arc<Dataset>, plan: BatchPlan, epochs: Range<usize>) -> Result<Batcher> {
        if plan.batch_size == 0 {
            bail!("batch size must be positive");
        }
        if plan.prefetch == 0 {
            bail!("prefetch must be positive");
        }
        plan.shard.check()?;
        let batches_per_epoch = plan.batches_per_epoch(ds.n);
        if batches_per_epoch == 0 {
            bail!(
                "{}: {} images make no batch of {} with drop_last",
                ds.name,
                ds.n,
                plan.batch_size
            );
        }
        let (batch_tx, batches) = sync_channel(plan.prefetch);
        // Room for every buffer in flight, so `recycle` never blocks.
        let (recycled, recycled_rx) = sync_channel::<Batch>(plan.prefetch + 2);
        let remaining = batches_per_epoch * epochs.len() * plan.shard.count;
        let producer = std::thread::Builder::new()
            .name("rbnn-batcher".into())
            .spawn(move || {
                let norm = Normalizer::for_dataset(&ds);
                for epoch in epochs {
                    let order = plan.epoch_order(ds.n, epoch);
                    for index in 0..batches_per_epoch {
                        let shard = plan.shard;
                        for part in shard.first..shard.first + shard.count {
                            let mut batch = recycled_rx.try_recv().unwrap_or_default();
                            plan.fill(&ds, &norm, &order, epoch, index, part, &mut batch);
                            if batch_tx.send(batch).is_err() {
                                // The Batcher was dropped: nobody wants the rest.
                                return;
                            }
                        }
                    }
                }
            })?;
        Ok(Batcher {
            batches: Some(batches),
            recycled,
            producer: Some(producer),
            batches_per_epoch,
            remaining,
        })
    }

    /// Whole batches per epoch (the iterator yields `shard.count` parts of each).
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// Gives a consumed batch's buffers back for reuse, so steady-state batching allocates
    /// nothing.
    pub fn recycle(&self, batch: Batch) {
        // A full pool only means the buffer is freed instead of reused.
        let _ = self.recycled.try_send(batch);
    }
}

impl Iterator for Batcher {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.remaining == 0 {
            return None;
        }
        let batch = self.batches.as_ref()?.recv().ok();
        match batch {
            Some(b) => {
                self.remaining -= 1;
                Some(b)
            }
            None => {
                // The producer ended early, which only a panic can do: surface it here.
                if let Some(handle) = self.producer.take() {
                    if let Err(panic) = handle.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Batcher {}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Closing the channel first makes a producer blocked on a full channel return.
        self.batches.take();
        if let Some(handle) = self.producer.take() {
            let _ = handle.join();
        }
    }
}
