// defines: WALK_LANES, WALK_STEPS, ChannelWalk, walk_start, walk_steps, walk_next: the per-channel kernels
// that software adapters run (batchnorm_walk.wgsl, channel_dot_walk.wgsl, standardize_walk.wgsl;
// host: gpu::KernelVariant::Software).
//
// On lavapipe a workgroup runs as SIMD lanes: every load or store whose address differs between
// lanes is a loop over the lanes, an integer division is one per lane, and every
// workgroupBarrier switches between all of the workgroup's subgroups. So these kernels take one
// channel c per workgroup row (its per-channel values load once, as uniform loads), find their
// elements without divisions in the loop, and keep one partial per lane (no barrier; the second
// stage, the *finish kernels, combines them in a fixed order).
//
// Workgroup (q, c) covers elements j in [q*CHUNK, (q+1)*CHUNK) of channel c's M = N*HW (CHUNK =
// WALK_LANES * WALK_STEPS = 4096, the same chunks as common/channel_chunks.wgsl): lane l takes
// j = q*CHUNK + l + k*WALK_LANES at step k = 0..WALK_STEPS-1, in that order. Element j = n*HW + hw
// lives at (n*C + c)*HW + hw. A step moves every lane by WALK_LANES elements: a fixed number of
// whole planes and a rest, computed once per lane (walk_start), so that walk_next needs no
// division and no loop, whatever the plane size.

const WALK_LANES: u32 = 64u;
const WALK_STEPS: u32 = 64u;

// A lane's position: element j of the channel, its hw in the plane and its index e in the
// tensor, with the stride of a step: WALK_LANES elements are `planes` whole planes and `rest`
// elements more (computed once, so that a step needs no division).
struct ChannelWalk {
    j: u32,
    hw: u32,
    e: u32,
    plane: u32,
    rest: u32,
    // e's advance without a wrap: planes * channels * plane + rest.
    step_e: u32,
    // e's advance at a wrap into the next sample: (channels - 1) * plane.
    wrap_e: u32,
}

// Lane l's walk over chunk q of channel c of `channels` with planes of `plane` elements.
fn walk_start(q: u32, l: u32, c: u32, channels: u32, plane: u32) -> ChannelWalk {
    let j = q * WALK_LANES * WALK_STEPS + l;
    let n = j / plane;
    let h = j - n * plane;
    let planes = WALK_LANES / plane;
    let rest = WALK_LANES - planes * plane;
    return ChannelWalk(
        j,
        h,
        (n * channels + c) * plane + h,
        plane,
        rest,
        planes * channels * plane + rest,
        (channels - 1u) * plane,
    );
}

// Moves to j + WALK_LANES: hw wraps into the next sample's plane at most once (rest < plane).
fn walk_next(w: ptr<function, ChannelWalk>) {
    (*w).j += WALK_LANES;
    (*w).hw += (*w).rest;
    (*w).e += (*w).step_e;
    if (*w).hw >= (*w).plane {
        (*w).hw -= (*w).plane;
        (*w).e += (*w).wrap_e;
    }
}

// The steps of a walk from w that stay below element m of its channel (at most WALK_STEPS).
fn walk_steps(w: ChannelWalk, m: u32) -> u32 {
    if w.j >= m {
        return 0u;
    }
    return min(WALK_STEPS, (m - w.j + WALK_LANES - 1u) / WALK_LANES);
}
