// Softmax cross-entropy over logits [N, K] with u32 targets [N], averaged over the batch, and
// accuracy counts. Per-sample results go to `per_sample` [3, N] as u32 words: row 0 the loss
// (f32 bits), row 1 top-1 correct (0/1), row 2 top-5 correct (0/1). `accumulate` then adds this
// batch's first `valid` samples into the accumulator [loss_sum (f32 bits), top1, top5, samples].
//
// Top-k rule: the target's rank is the number of classes j with logit[j] > logit[t], or equal
// with j < t (ties go to the lower class index, as a stable descending sort orders them);
// correct@k iff rank < k. A target >= K gets a NaN loss and counts as wrong.
// 1D grid (common/grid.wgsl).
// #include "common/grid.wgsl"

struct Params {
    n: u32,
    k: u32,
    valid: u32,  // accumulate: samples 0..valid count (an evaluation batch may be padded)
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> per_sample_in: array<u32>;
@group(0) @binding(3) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(4) var<storage, read_write> per_sample: array<u32>;
@group(0) @binding(5) var<storage, read_write> acc: array<u32>;

var<workgroup> loss_part: array<f32, 256>;
var<workgroup> top1_part: array<u32, 256>;
var<workgroup> top5_part: array<u32, 256>;

struct Row {
    max_logit: f32,
    sum_exp: f32,  // sum of exp(logit - max_logit)
}

// Loss and accuracy of sample i into per_sample; returns what the gradient needs.
fn score_row(i: u32) -> Row {
    let base = i * p.k;
    var mx = logits[base];
    for (var j = 1u; j < p.k; j++) {
        mx = max(mx, logits[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.k; j++) {
        s += exp(logits[base + j] - mx);
    }
    let t = targets[i];
    let lt = logits[base + min(t, p.k - 1u)];
    var rank = 0u;
    for (var j = 0u; j < p.k; j++) {
        let v = logits[base + j];
        rank += u32(v > lt || (v == lt && j < t));
    }
    let ok = t < p.k;
    // A NaN built at run time (a constant NaN is a WGSL compile error).
    let nan = bitcast<f32>(0x7fc00000u | (t & 0u));
    let loss = select(nan, mx + log(s) - lt, ok);
    per_sample[i] = bitcast<u32>(loss);
    per_sample[p.n + i] = u32(ok && rank < 1u);
    per_sample[2u * p.n + i] = u32(ok && rank < 5u);
    return Row(mx, s);
}

// Training: per-sample loss and accuracy, and dlogits = (softmax - onehot) / N.
@compute @workgroup_size(256)
fn train_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n {
        return;
    }
    let r = score_row(i);
    let t = targets[i];
    let inv_n = 1.0 / f32(p.n);
    let inv_s = 1.0 / r.sum_exp;
    let base = i * p.k;
    for (var j = 0u; j < p.k; j++) {
        let prob = exp(logits[base + j] - r.max_logit) * inv_s;
        dlogits[base + j] = (prob - select(0.0, 1.0, j == t)) * inv_n;
    }
}

// Evaluation: per-sample loss and accuracy only.
@compute @workgroup_size(256)
fn eval_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n {
        return;
    }
    score_row(i);
}

// One workgroup: lane l sums samples l, l+256, ... < valid in order, then a binary tree; lane 0
// adds the batch totals to the accumulator (one writer, so no atomics are needed).
@compute @workgroup_size(256)
fn accumulate(@builtin(local_invocation_index) l: u32) {
    var s = 0.0;
    var c1 = 0u;
    var c5 = 0u;
    for (var i = l; i < p.valid; i += 256u) {
        s += bitcast<f32>(per_sample_in[i]);
        c1 += per_sample_in[p.n + i];
        c5 += per_sample_in[2u * p.n + i];
    }
    loss_part[l] = s;
    top1_part[l] = c1;
    top5_part[l] = c5;
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        workgroupBarrier();
        if l < stride {
            loss_part[l] += loss_part[l + stride];
            top1_part[l] += top1_part[l + stride];
            top5_part[l] += top5_part[l + stride];
        }
    }
    if l == 0u {
        acc[0] = bitcast<u32>(bitcast<f32>(acc[0]) + loss_part[0]);
        acc[1] += top1_part[0];
        acc[2] += top5_part[0];
        acc[3] += p.valid;
    }
}
