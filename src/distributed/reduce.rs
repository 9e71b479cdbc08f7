//! The fixed-order sum of the gradient arena over ranks, as pure functions (the MPI transport
//! moves the data; this decides what is added to what, and in which order).
//!
//! MPI_Allreduce with MPI_SUM may add the ranks' values in any order (it depends on the
//! implementation, the message size and the topology), so its result may change with the rank
//! count or the machine. rbnn sums in rank order instead, with the bandwidth of a ring
//! all-reduce: the arena of `len` elements is cut into one chunk per rank (`chunk`); an
//! all-to-all gives rank r chunk r of every rank; rank r adds them in rank order 0, 1, ..., N-1
//! and scales once (`sum_in_rank_order`); an all-gather gives everyone every summed chunk. Each
//! rank sends and receives 2(N-1)/N of the arena per step.
//!
//! Element i of the result is therefore (((g_0[i] + g_1[i]) + g_2[i]) + ... + g_{N-1}[i]) * scale
//! in f32, the same expression, in the same order, as the single-process accumulation of N
//! micro-batches (shaders/grad_accumulate.wgsl), whatever N, the chunking or the machine.

use std::ops::Range;

/// The elements of an arena of `len` that rank `rank` of `ranks` sums: chunk r is
/// [r*len/ranks, (r+1)*len/ranks) (sizes differ by at most one; some may be empty when
/// len < ranks).
pub fn chunk(len: usize, ranks: usize, rank: usize) -> Range<usize> {
    rank * len / ranks..(rank + 1) * len / ranks
}

/// `received` holds the same chunk from every rank, rank after rank (`ranks` runs of
/// `out.len()` elements). Writes out[i] = (received[0][i] + received[1][i] + ... ) * scale,
/// added in rank order, scaled once.
pub fn sum_in_rank_order(received: &[f32], ranks: usize, scale: f32, out: &mut [f32]) {
    let n = out.len();
    assert_eq!(
        received.len(),
        ranks * n,
        "sum_in_rank_order: {} received elements for {ranks} ranks of {n}",
        received.len()
    );
    // Block by block, so each block stays in cache across the ranks' additions and the scaling.
    const BLOCK: usize = 4096;
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let block = &mut out[start..end];
        block.copy_from_slice(&received[start..end]);
        for rank in 1..ranks {
            let theirs = &received[rank * n + start..rank * n + end];
            for (o, &v) in block.iter_mut().zip(theirs) {
                *o += v;
            }
        }
        for o in block.iter_mut() {
            *o *= scale;
        }
    }
}

/// The whole reduction done in one place (the reference for the exchange): element i is
/// (per_rank[0][i] + per_rank[1][i] + ...) * scale, added in rank order.
pub fn reference(per_rank: &[Vec<f32>], scale: f32) -> Vec<f32> {
    let mut out = per_rank[0].clone();
    for g in &per_rank[1..] {
        for (o, &v) in out.iter_mut().zip(g) {
            *o += v;
        }
    }
    out.iter().map(|v| v * scale).collect()
}

/// What `sum_in_rank_order` over `parts` micro-batches or ranks multiplies by: the mean of the
/// per-part gradients (each part's loss is the mean over its samples).
pub fn mean_scale(parts: usize) -> f32 {
    1.0 / parts as f32
}
