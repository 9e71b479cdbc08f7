//! What the batches of a split are: the order of each epoch, each sample's random draws, the
//! batch layout (`BatchPlan`), and a batch (`Batch`). The batcher (src/data/batcher.rs) makes
//! them in the background; src/data/stream.rs fills them from a streamed source. Data-parallel
//! training (and gradient accumulation) takes each batch in contiguous parts (`Shard`).

use super::augment::{write_sample, Augment, Crop, Normalizer};
use super::source::Source;
use super::Dataset;
use crate::rng::Rng;
use anyhow::{bail, Result};
use std::ops::Range;

/// How the batches of a split are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    pub batch_size: usize,
    /// A new random order each epoch (else dataset order).
    pub shuffle: bool,
    /// Random crop and flip (else the images as they are). For a streamed ImageNet folder:
    /// Some means its train transform (RandomResizedCrop, and the flip when `hflip`), None its
    /// validation transform (resize, centre crop); `pad` does not apply there.
    pub augment: Option<Augment>,
    /// Skip the last batch of an epoch when it is smaller than `batch_size`.
    pub drop_last: bool,
    pub seed: u64,
    /// Batches made ahead of the consumer (the channel bound).
    pub prefetch: usize,
    /// Decoding threads of a streamed source (0: one per core); a dataset in memory is batched
    /// on one thread. The batches do not depend on it.
    pub threads: usize,
    /// Which parts of each batch this consumer gets (`Shard::WHOLE`: the whole batch).
    pub shard: Shard,
}

/// The parts of every batch one consumer gets. A batch of `len` samples is cut into `parts`
/// contiguous parts, part i holding positions [i*len/parts, (i+1)*len/parts) (so sizes differ by
/// at most one, and only in a last partial batch when `parts` divides the batch size), and the
/// batcher yields parts `first..first + count` of each batch, in order. Rank r of N, accumulating
/// A micro-batches per optimizer step, takes parts r*A..(r+1)*A of N*A: which samples a part
/// holds depends only on (seed, epoch, sample, number of parts).
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

    /// This consumer's parts, in order.
    pub fn own(&self) -> Range<usize> {
        self.first..self.first + self.count
    }

    /// Sizes of this consumer's parts of a batch of `len` samples, in order.
    pub fn own_sizes(&self, len: usize) -> Vec<usize> {
        self.own().map(|p| self.part(len, p).len()).collect()
    }

    /// The smallest part of a batch of `len` samples, over all consumers (BatchNorm needs 2).
    pub fn smallest_part(&self, len: usize) -> usize {
        len / self.parts
    }

    /// Refuses parts that do not exist.
    pub fn check(&self) -> Result<()> {
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
            threads: 0,
            shard: Shard::WHOLE,
        }
    }

    /// `train` for any source: the flip where the source allows it.
    pub fn train_source(source: &Source, batch_size: usize, seed: u64) -> BatchPlan {
        BatchPlan {
            batch_size,
            shuffle: true,
            augment: Some(Augment {
                pad: super::augment::CROP_PADDING,
                hflip: source.hflip(),
            }),
            drop_last: false,
            seed,
            prefetch: DEFAULT_PREFETCH,
            threads: 0,
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
            threads: 0,
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

    /// The generator of the random transform of dataset sample `index` in epoch `epoch`.
    pub fn sample_rng(&self, epoch: usize, index: u32) -> Rng {
        Rng::new(derive_seed(
            self.seed,
            [AUGMENT_STREAM, epoch as u64, index as u64],
        ))
    }

    /// The crop and flip of dataset sample `index` in epoch `epoch`.
    pub fn crop(&self, epoch: usize, index: u32) -> Crop {
        match self.augment {
            Some(aug) => aug.sample(&mut self.sample_rng(epoch, index)),
            None => Crop::IDENTITY,
        }
    }

    /// Sets a batch's position, sample indices and labels (`label` of a sample index) for part
    /// `part` (see `Shard`) of batch `index` of epoch `epoch`, and sizes its images for
    /// `sample_len` floats per sample.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_batch(
        &self,
        order: &[u32],
        epoch: usize,
        index: usize,
        part: usize,
        sample_len: usize,
        label: impl Fn(u32) -> u32,
        batch: &mut Batch,
    ) {
        let batch_start = index * self.batch_size;
        let batch_end = (batch_start + self.batch_size).min(order.len());
        let within = self.shard.part(batch_end - batch_start, part);
        let (start, end) = (batch_start + within.start, batch_start + within.end);
        batch.epoch = epoch;
        batch.index = index;
        batch.skipped = 0;
        batch.indices.clear();
        batch.indices.extend_from_slice(&order[start..end]);
        batch.labels.clear();
        batch.labels.extend(batch.indices.iter().map(|&i| label(i)));
        batch.images.resize((end - start) * sample_len, 0.0);
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
        let sample_len = ds.sample_len();
        self.start_batch(
            order,
            epoch,
            index,
            part,
            sample_len,
            |i| ds.labels[i as usize],
            batch,
        );
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
    /// Samples whose file could not be read and were replaced by another of their class
    /// (streamed sources only).
    pub skipped: usize,
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
