//! `rbnn bench allreduce` (under mpirun): what the sum of the gradient arena over ranks costs per
//! training step, in its three parts: the read-back of the arena from the GPU, the exchange
//! (all-to-all, sum in rank order, all-gather) and the write back. Every rank fills its arena with
//! values it can regenerate for every other rank, so the first exchange is checked, bit for bit,
//! against the reduction done in one place (`reduce::reference`).

use super::{reduce, Cluster};
use crate::gpu::{Gpu, Readback};
use crate::rng::Rng;
use anyhow::{bail, Result};
use serde::Serialize;
use std::time::Instant;

/// One measured arena size (times: medians over the timed steps, on rank 0).
#[derive(Clone, Debug, Serialize)]
pub struct AllReduceBench {
    /// What the size is ("resnet18_1w1a gradient arena", "11700216 elements").
    pub what: String,
    pub ranks: usize,
    pub elements: usize,
    pub bytes: u64,
    /// Bytes each rank sends (and receives) per step: 2 (N-1)/N of the arena.
    pub bytes_sent_per_rank: u64,
    pub readback_ms: f64,
    pub exchange_ms: f64,
    pub upload_ms: f64,
    pub total_ms: f64,
    /// bytes_sent_per_rank / exchange time.
    pub exchange_gb_per_s: f64,
    pub steps: usize,
}

/// The values rank `rank` holds in the check: distinct per rank and element, with signs and
/// magnitudes that make the order of the additions matter.
fn rank_values(rank: usize, elements: usize) -> Vec<f32> {
    let mut rng = Rng::new(0x5eed_0000 + rank as u64);
    (0..elements)
        .map(|_| {
            let mantissa = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let exponent = (rng.next_u64() % 17) as i32 - 8;
            mantissa * 2f32.powi(exponent)
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Times `steps` sums over the ranks of an arena of `elements` f32 (after 2 untimed ones), the
/// first one checked against the reference.
pub fn allreduce(
    gpu: &Gpu,
    cluster: &Cluster,
    what: &str,
    elements: usize,
    steps: usize,
) -> Result<AllReduceBench> {
    let ranks = cluster.size();
    if ranks < 2 {
        bail!(
            "rbnn bench allreduce measures the sum over ranks: start it with at least 2 ranks, \
             e.g. mpirun -np 2 rbnn bench allreduce (an rbnn built with --features mpi)"
        );
    }
    if elements == 0 {
        bail!("--elements must be at least 1");
    }
    let arena = gpu.try_tensor("benchmark gradient arena", &[elements])?;
    gpu.write(&arena, &rank_values(cluster.rank(), elements));
    let readback = Readback::new(gpu, &arena);
    let scale = reduce::mean_scale(ranks);
    let mut host = Vec::new();
    let (mut read_ms, mut exchange_ms, mut upload_ms) = (Vec::new(), Vec::new(), Vec::new());
    for step in 0..steps + 2 {
        let started = Instant::now();
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        readback.record(&mut encoder);
        gpu.queue.submit([encoder.finish()]);
        readback.read_into(gpu, &mut host)?;
        let read = started.elapsed().as_secs_f64();
        // Every rank ready, so the exchange's time is not another rank's read-back.
        cluster.all_gather_bytes(&[]);
        let synced = started.elapsed().as_secs_f64();
        cluster.sum_in_rank_order(&mut host, scale)?;
        let exchanged = started.elapsed().as_secs_f64();
        if step == 0 {
            let all: Vec<Vec<f32>> = (0..ranks).map(|r| rank_values(r, elements)).collect();
            let want = reduce::reference(&all, scale);
            if let Some(i) = (0..elements).find(|&i| host[i].to_bits() != want[i].to_bits()) {
                bail!(
                    "the sum over ranks differs from the reference at element {i} of {elements}: \
                     {} instead of {}",
                    host[i],
                    want[i]
                );
            }
        }
        gpu.write(&arena, &host);
        gpu.queue.submit(std::iter::empty::<wgpu::CommandBuffer>());
        gpu.wait()?;
        let done = started.elapsed().as_secs_f64();
        if step >= 2 {
            read_ms.push(read * 1e3);
            exchange_ms.push((exchanged - synced) * 1e3);
            upload_ms.push((done - exchanged) * 1e3);
        }
    }
    let bytes = (elements * 4) as u64;
    let sent = 2 * (ranks as u64 - 1) * bytes / ranks as u64;
    let (r, e, u) = (median(read_ms), median(exchange_ms), median(upload_ms));
    Ok(AllReduceBench {
        what: what.to_string(),
        ranks,
        elements,
        bytes,
        bytes_sent_per_rank: sent,
        readback_ms: r,
        exchange_ms: e,
        upload_ms: u,
        total_ms: r + e + u,
        exchange_gb_per_s: sent as f64 / (e * 1e-3) / 1e9,
        steps,
    })
}

/// The table `rbnn bench allreduce` prints.
pub fn format(rows: &[AllReduceBench]) -> String {
    let mut s = String::from(
        "sum of the gradient arena over ranks, per step (medians):\n\
         | arena | ranks | elements | MB | sent per rank, MB | read-back ms | exchange ms | \
         write ms | total ms | exchange GB/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            r.what,
            r.ranks,
            r.elements,
            r.bytes as f64 / 1e6,
            r.bytes_sent_per_rank as f64 / 1e6,
            r.readback_ms,
            r.exchange_ms,
            r.upload_ms,
            r.total_ms,
            r.exchange_gb_per_s
        );
    }
    s
}
