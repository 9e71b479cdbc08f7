//! Batches of a streamed source (an ImageNet folder) made by a pool of worker threads.
//!
//! The producer thread (the batcher's) lays out each batch (sample indices, labels) in order and
//! queues one job per sample; the workers read, decode and transform samples, each into its own
//! buffer, then copy it into its slot of the batch. A few batches are filled at once (2, or enough
//! for two samples per worker), so workers move on to the next batch while the last samples of
//! one finish; and
//! finished batches wait in the batcher's bounded channel (`BatchPlan::prefetch`): memory stays
//! bounded whatever the speeds. Batches go out in order, and each sample's content depends only
//! on (seed, epoch, sample) and the files, never on which thread made it or when.

use super::augment::Augment;
use super::imagenet::{ImageNet, SampleScratch};
use super::plan::{Batch, BatchPlan};
use super::transform::Transform;
use anyhow::{anyhow, Result};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

/// Batches being filled at once, at least.
const IN_FLIGHT: usize = 2;

/// What to make: the batches of `epochs` under `plan`.
pub struct BatchJobs {
    pub plan: BatchPlan,
    pub epochs: Range<usize>,
    pub batches_per_epoch: usize,
}

/// One sample to make: sample `index` of `epoch` into slot `slot` of batch number `seq`.
struct Job {
    seq: u64,
    batch: Arc<Mutex<Batch>>,
    slot: usize,
    epoch: usize,
    index: u32,
}

/// A job done: its batch's number and whether the sample was replaced, or why it could not be
/// made.
type Done = (u64, Result<bool>);

/// A batch being filled.
struct Pending {
    seq: u64,
    batch: Arc<Mutex<Batch>>,
    missing: usize,
    skipped: usize,
}

/// The number of worker threads for `requested` (0: one per core).
pub fn worker_threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// The transform of a plan's samples: the train transform when it augments (with its flip
/// setting), else the validation transform.
pub fn transform_for(images: &ImageNet, augment: Option<Augment>) -> Transform {
    match (augment, images.train_transform) {
        (Some(a), Transform::Train { crop, .. }) => Transform::Train {
            crop,
            hflip: a.hflip,
        },
        _ => images.eval_transform,
    }
}

/// Makes every batch of `jobs` from `images` and sends them in order to `out`, reusing the
/// buffers that come back through `recycled`. Returns when all are sent, when the receiver is
/// gone, or with the first sample that cannot be made.
pub fn produce(
    images: &ImageNet,
    jobs: &BatchJobs,
    out: &SyncSender<Batch>,
    recycled: &Receiver<Batch>,
) -> Result<()> {
    let plan = &jobs.plan;
    let transform = transform_for(images, plan.augment);
    let sample_len: usize = images.image_shape().iter().product();
    let (job_tx, job_rx) = channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<Done>();
    let stop = AtomicBool::new(false);
    let threads = worker_threads(plan.threads);
    let in_flight = IN_FLIGHT.max((2 * threads).div_ceil(plan.batch_size));
    std::thread::scope(|scope| {
        let mut started = Ok(());
        for t in 0..threads {
            let done_tx = done_tx.clone();
            let (job_rx, stop, transform) = (&job_rx, &stop, &transform);
            let spawned = std::thread::Builder::new()
                .name(format!("rbnn-decode-{t}"))
                .spawn_scoped(scope, move || {
                    let mut scratch = SampleScratch::default();
                    let mut sample = vec![0f32; sample_len];
                    while let Some(job) = next_job(job_rx) {
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let rng = plan.sample_rng(job.epoch, job.index);
                        let result = images.write_sample(
                            job.index as usize,
                            transform,
                            &rng,
                            &mut scratch,
                            &mut sample,
                        );
                        if result.is_ok() {
                            let Ok(mut batch) = job.batch.lock() else {
                                return;
                            };
                            batch.images[job.slot * sample_len..(job.slot + 1) * sample_len]
                                .copy_from_slice(&sample);
                        }
                        let seq = job.seq;
                        // The batch's other owner must be the producer alone once it is done.
                        drop(job);
                        if done_tx.send((seq, result)).is_err() {
                            return;
                        }
                    }
                });
            if let Err(e) = spawned {
                started = Err(anyhow!("cannot start a decoding thread: {e}"));
                break;
            }
        }
        drop(done_tx);
        let result = started.and_then(|()| {
            let queues = Queues {
                jobs: &job_tx,
                done: &done_rx,
                out,
                recycled,
            };
            coordinate(images, jobs, in_flight, sample_len, &queues)
        });
        // Workers skip what is left in the queue, and closing it ends them.
        stop.store(true, Ordering::Relaxed);
        drop(job_tx);
        result
    })
}

/// The producer's channels: jobs to the workers, their results back, finished batches to the
/// consumer, and used batches back from it.
struct Queues<'a> {
    jobs: &'a Sender<Job>,
    done: &'a Receiver<Done>,
    out: &'a SyncSender<Batch>,
    recycled: &'a Receiver<Batch>,
}

/// The next job, or None when the queue is closed. The lock is held only to take one job.
fn next_job(queue: &Mutex<Receiver<Job>>) -> Option<Job> {
    let rx = queue.lock().ok()?;
    rx.recv().ok()
}

/// The producer's side of `produce`: lays out batches, queues their samples, collects the
/// finished samples and sends the batches in order.
fn coordinate(
    images: &ImageNet,
    jobs: &BatchJobs,
    in_flight: usize,
    sample_len: usize,
    queues: &Queues,
) -> Result<()> {
    let plan = &jobs.plan;
    let parts = plan.shard.own();
    let mut positions = jobs.epochs.clone().flat_map(|e| {
        let parts = parts.clone();
        (0..jobs.batches_per_epoch).flat_map(move |b| parts.clone().map(move |p| (e, b, p)))
    });
    let mut order: (usize, Vec<u32>) = (usize::MAX, Vec::new());
    let mut window: VecDeque<Pending> = VecDeque::new();
    let mut next_seq = 0u64;
    loop {
        while window.len() < in_flight {
            let Some((epoch, index, part)) = positions.next() else {
                break;
            };
            if order.0 != epoch {
                order = (epoch, plan.epoch_order(images.len(), epoch));
            }
            let mut batch = queues.recycled.try_recv().unwrap_or_default();
            plan.start_batch(
                &order.1,
                epoch,
                index,
                part,
                sample_len,
                |i| images.label(i as usize),
                &mut batch,
            );
            let samples = batch.indices.clone();
            let shared = Arc::new(Mutex::new(batch));
            for (slot, &sample) in samples.iter().enumerate() {
                queues
                    .jobs
                    .send(Job {
                        seq: next_seq,
                        batch: shared.clone(),
                        slot,
                        epoch,
                        index: sample,
                    })
                    .map_err(|_| anyhow!("the decoding threads stopped"))?;
            }
            window.push_back(Pending {
                seq: next_seq,
                batch: shared,
                missing: samples.len(),
                skipped: 0,
            });
            next_seq += 1;
        }
        let Some(front) = window.front() else {
            return Ok(());
        };
        if front.missing == 0 {
            let done = window.pop_front().expect("the window has a front");
            let mut batch = Arc::try_unwrap(done.batch)
                .map_err(|_| anyhow!("a finished batch is still shared"))?
                .into_inner()
                .map_err(|_| anyhow!("a decoding thread panicked"))?;
            batch.skipped = done.skipped;
            if queues.out.send(batch).is_err() {
                // The Batcher was dropped: nobody wants the rest.
                return Ok(());
            }
            continue;
        }
        let front_seq = front.seq;
        let (seq, result) = queues
            .done
            .recv()
            .map_err(|_| anyhow!("the decoding threads stopped (one panicked)"))?;
        let pending = &mut window[(seq - front_seq) as usize];
        pending.missing -= 1;
        if result? {
            pending.skipped += 1;
        }
    }
}
