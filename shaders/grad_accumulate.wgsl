// Gradient accumulation over the micro-batches of one optimizer step (`--accumulate`), in the
// order and with the rounding of the sum over ranks (src/distributed/reduce.rs): after the first
// micro-batch's backward `store` (acc = g); after each later one but the last `add`
// (acc = acc + g); after the last `finish` (g = (acc + g) * scale), which the optimizer reads.
// Only adds and one multiply, each correctly rounded in f32 (no fused multiply-add can form), so
// the result is the host's rank-order sum bit for bit.
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"

struct Params {
    n: u32,
    scale: f32,
}
var<immediate> p: Params;

// The gradient arena the backward writes (and, after `finish`, the optimizer reads).
@group(0) @binding(0) var<storage, read_write> grad: array<f32>;
// The running sum of the step's earlier micro-batches, laid out like the arena.
@group(0) @binding(1) var<storage, read_write> acc: array<f32>;

@compute @workgroup_size(256)
fn store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    acc[i] = grad[i];
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    acc[i] = acc[i] + grad[i];
}

@compute @workgroup_size(256)
fn finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    let sum = acc[i] + grad[i];
    grad[i] = sum * p.scale;
}
