//! Batches of normalised f32 NCHW images and u32 labels, made a few batches ahead in the
//! background so the GPU never waits for data: on one thread from a dataset in memory, on a pool
//! of decoding threads from a streamed one (src/data/stream.rs).
//!
//! Determinism: the order of epoch e is a Fisher-Yates shuffle seeded by (seed, e), and the random
//! transform of a sample (crop and flip) by (seed, e, its index in the dataset); nothing depends
//! on thread timing or count, the batch size or where a run started, so a run resumed at epoch e
//! sees exactly the batches of an uninterrupted one. Like the official loader (drop_last=False)
//! the last partial batch of an epoch is kept unless the plan asks for `drop_last`.

use super::augment::{write_sample, Augment, Crop, Normalizer};
use super::source::Source;
use super::{stream, Dataset};
use crate::rng::Rng;
use anyhow::{anyhow, bail, Result};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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

    /// Sets a batch's position, sample indices and labels (`label` of a sample index) for batch
    /// `index` of epoch `epoch`, and sizes its images for `sample_len` floats per sample.
    pub(super) fn start_batch(
        &self,
        order: &[u32],
        epoch: usize,
        index: usize,
        sample_len: usize,
        label: impl Fn(u32) -> u32,
        batch: &mut Batch,
    ) {
        let start = index * self.batch_size;
        let end = (start + self.batch_size).min(order.len());
        batch.epoch = epoch;
        batch.index = index;
        batch.skipped = 0;
        batch.indices.clear();
        batch.indices.extend_from_slice(&order[start..end]);
        batch.labels.clear();
        batch.labels.extend(batch.indices.iter().map(|&i| label(i)));
        batch.images.resize((end - start) * sample_len, 0.0);
    }

    /// Fills `batch` with batch `index` of epoch `epoch`, whose order is `order` (from
    /// `epoch_order`); reuses the batch's buffers.
    pub fn fill(
        &self,
        ds: &Dataset,
        norm: &Normalizer,
        order: &[u32],
        epoch: usize,
        index: usize,
        batch: &mut Batch,
    ) {
        let sample_len = ds.sample_len();
        self.start_batch(
            order,
            epoch,
            index,
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

/// Iterates over the batches of a range of epochs, made in the background.
pub struct Batcher {
    batches: Option<Receiver<Batch>>,
    recycled: SyncSender<Batch>,
    producer: Option<JoinHandle<()>>,
    /// Why the producer stopped early (a streamed class none of whose files can be read).
    failure: Arc<Mutex<Option<anyhow::Error>>>,
    batches_per_epoch: usize,
    remaining: usize,
}

impl Batcher {
    /// Starts making the batches of `epochs` (e.g. `start..total` for training, `0..1` for one
    /// evaluation pass) from a dataset in memory (`Arc<Dataset>`) or any `Source`.
    pub fn new(
        source: impl Into<Source>,
        plan: BatchPlan,
        epochs: Range<usize>,
    ) -> Result<Batcher> {
        let source = source.into();
        if plan.batch_size == 0 {
            bail!("batch size must be positive");
        }
        if plan.prefetch == 0 {
            bail!("prefetch must be positive");
        }
        let n = source.len();
        let batches_per_epoch = plan.batches_per_epoch(n);
        if batches_per_epoch == 0 {
            bail!(
                "{}: {} images make no batch of {} with drop_last",
                source.name(),
                n,
                plan.batch_size
            );
        }
        let (batch_tx, batches) = sync_channel(plan.prefetch);
        // Room for every buffer in flight, so `recycle` never blocks.
        let (recycled, recycled_rx) = sync_channel::<Batch>(plan.prefetch + 2);
        let remaining = batches_per_epoch * epochs.len();
        let failure = Arc::new(Mutex::new(None));
        let producer_failure = failure.clone();
        let producer = std::thread::Builder::new()
            .name("rbnn-batcher".into())
            .spawn(move || match source {
                Source::Memory(ds) => {
                    let norm = Normalizer::for_dataset(&ds);
                    for epoch in epochs {
                        let order = plan.epoch_order(ds.n, epoch);
                        for index in 0..batches_per_epoch {
                            let mut batch = recycled_rx.try_recv().unwrap_or_default();
                            plan.fill(&ds, &norm, &order, epoch, index, &mut batch);
                            if batch_tx.send(batch).is_err() {
                                // The Batcher was dropped: nobody wants the rest.
                                return;
                            }
                        }
                    }
                }
                Source::Stream(images) => {
                    let jobs = stream::BatchJobs {
                        plan,
                        epochs,
                        batches_per_epoch,
                    };
                    if let Err(e) = stream::produce(&images, &jobs, &batch_tx, &recycled_rx) {
                        if let Ok(mut f) = producer_failure.lock() {
                            *f = Some(e);
                        }
                    }
                }
            })?;
        Ok(Batcher {
            batches: Some(batches),
            recycled,
            producer: Some(producer),
            failure,
            batches_per_epoch,
            remaining,
        })
    }

    /// After the last batch: an error when the producer stopped before making every batch,
    /// with its cause.
    pub fn finished(&mut self) -> Result<()> {
        if self.remaining == 0 {
            return Ok(());
        }
        Err(self.failure())
    }

    /// Why the batches ended early (call when `next` returned None before the end).
    pub fn failure(&mut self) -> anyhow::Error {
        if let Some(handle) = self.producer.take() {
            self.batches.take();
            if let Err(panic) = handle.join() {
                std::panic::resume_unwind(panic);
            }
        }
        match self.failure.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => e,
            None => anyhow!("the batcher ended {} batches early", self.remaining),
        }
    }

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
                // The producer ended early, which only a panic (surfaced here) or a streamed
                // source's error (kept for `finished`) can do.
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
