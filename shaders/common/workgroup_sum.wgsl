// defines: workgroup_sum, the deterministic sum over a workgroup of 256 invocations (standardize,
// rotate, channel_dot, batchnorm, linear, infer_ops): a binary tree in a fixed order, lane l adding
// lane l + s for s = 128, 64, ..., 1, so the same inputs give the same bits on every run and in
// every kernel that uses it (the packed engine's per-sample mean equals the float path's).
// Four sums at once; a kernel that needs fewer passes zeros (which change no other lane).

const SUM_LANES: u32 = 256u;
var<workgroup> sum_lanes: array<vec4<f32>, SUM_LANES>;

// The sum of `v` over the workgroup's 256 invocations (`lane` = local_invocation_index), the same
// in every invocation. Call from uniform control flow.
fn workgroup_sum(lane: u32, v: vec4<f32>) -> vec4<f32> {
    sum_lanes[lane] = v;
    workgroupBarrier();
    for (var s = SUM_LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            sum_lanes[lane] += sum_lanes[lane + s];
        }
        workgroupBarrier();
    }
    let total = sum_lanes[0];
    // Nobody may overwrite sum_lanes[0] (in a following call) before everyone has read it.
    workgroupBarrier();
    return total;
}
