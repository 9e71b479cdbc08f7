// defines: WALK_LANES, WALK_STEPS, ChannelWalk, walk_start, walk_steps, walk_next: the per-channel kernels
// that software adapters run (batchnorm_walk.wgsl, channel_dot_walk.wgsl, standardize_walk.wgsl;
// host: gpu::KernelVariant::Software).
//
// On lavapipe a workgroup runs as SIMD lanes: every load whose address differs between lanes is
// a loop over the lanes, an integer division is one per lane, and every workgroupBarrier
// switches between all of the workgroup's subgroups. So these kernels take one channel c per
// workgroup row (its per-channel values load once, as uniform loads), find their elements
// without divisions, and keep one partial per lane (no barrier; the second stage, the *finish
// kernels, combines them in a fixed order).
//
// Workgroup (q, c) covers elements j in [q*CHUNK, (q+1)*CHUNK) of channel c's M = N*HW (CHUNK =
// WALK_LANES * WALK_STEPS = 4096, the same chunks as common/channel_chunks.wgsl): lane l takes
// j = q*CHUNK + l + k*WALK_LANES at step k = 0..WALK_STEPS-1, in that order. Element j = n*HW + hw
// lives at (n*C + c)*HW + hw.

const WALK_LANES: u32 = 64u;
const WALK_STEPS: u32 = 64u;

// A lane's position: element j of the channel, its hw, and its index e in the tensor.
struct ChannelWalk {
    j: u32,
    hw: u32,
    e: u32,
}

fn walk_start(q: u32, l: u32, c: u32, channels: u32, hw: u32) -> ChannelWalk {
    let j = q * WALK_LANES * WALK_STEPS + l;
    let n = j / hw;
    let h = j - n * hw;
    return ChannelWalk(j, h, (n * channels + c) * hw + h);
}

// Moves to j + WALK_LANES: hw wraps into the next samples' planes.
fn walk_next(w: ptr<function, ChannelWalk>, channels: u32, hw: u32) {
    (*w).j += WALK_LANES;
    (*w).hw += WALK_LANES;
    (*w).e += WALK_LANES;
    while (*w).hw >= hw {
        (*w).hw -= hw;
        (*w).e += (channels - 1u) * hw;
    }
}

// The steps of a walk from w that stay below element m of its channel (at most WALK_STEPS).
fn walk_steps(w: ChannelWalk, m: u32) -> u32 {
    if w.j >= m {
        return 0u;
    }
    return min(WALK_STEPS, (m - w.j + WALK_LANES - 1u) / WALK_LANES);
}
