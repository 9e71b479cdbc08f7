// defines: WG, PER_LANE, CHUNK, chunk_element, channel_element: the fixed-order two-stage
// per-channel reductions over [N, C, HW] tensors of batchnorm.wgsl and channel_dot.wgsl.
//
// Channel c holds M = N*HW elements; its element j = n*HW + hw lives at (n*C + c)*HW + hw.
// Stage one (*partials): workgroup (q, c) reduces chunk q of channel c, CHUNK = 256 lanes x
// PER_LANE elements: lane l takes the chunk's elements k*256 + l (k = 0..PER_LANE-1) in that
// order, then the workgroup combines its lanes in a fixed tree. Stage two (*finish): one
// workgroup per channel, lane l combines partials l, l+256, ... in order, then the same tree.

const WG: u32 = 256u;
const PER_LANE: u32 = 16u;
const CHUNK: u32 = 4096u;

// Element j of channel c's M that lane l takes at step k of chunk q.
fn chunk_element(q: u32, k: u32, l: u32) -> u32 {
    return q * CHUNK + k * WG + l;
}

// The index of channel c's element j in a [N, C, HW] tensor.
fn channel_element(c: u32, j: u32, channels: u32, hw: u32) -> u32 {
    let n = j / hw;
    return (n * channels + c) * hw + (j - n * hw);
}
