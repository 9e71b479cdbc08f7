//! Batches of normalised f32 NCHW images and u32 labels, made a few batches ahead in the
//! background so the GPU never waits for data: on one thread from a dataset in memory, on a pool
//! of decoding threads from a streamed one (src/data/stream.rs).
//!
//! Determinism: the order of epoch e is a Fisher-Yates shuffle seeded by (seed, e), and the random
//! transform of a sample (crop and flip) by (seed, e, its index in the dataset); nothing depends
//! on thread timing or count, the batch size or where a run started, so a run resumed at epoch e
//! sees exactly the batches of an uninterrupted one. Like the official loader (drop_last=False)
//! the last partial batch of an epoch is kept unless the plan asks for `drop_last`.

use super::augment::Normalizer;
use super::plan::{Batch, BatchPlan};
use super::source::Source;
use super::stream;
use anyhow::{anyhow, bail, Result};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
        plan.shard.check()?;
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
        // `shard.count` parts of every batch (one for the whole batch).
        let remaining = batches_per_epoch * epochs.len() * plan.shard.count;
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
                            for part in plan.shard.own() {
                                let mut batch = recycled_rx.try_recv().unwrap_or_default();
                                plan.fill(&ds, &norm, &order, epoch, index, part, &mut batch);
                                if batch_tx.send(batch).is_err() {
                                    // The Batcher was dropped: nobody wants the rest.
                                    return;
                                }
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
            None if self.remaining == 0 => anyhow!("the batcher has made all its batches"),
            None => anyhow!("the batcher ended {} batches early", self.remaining),
        }
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
