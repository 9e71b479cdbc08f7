// defines: Params, p and the bindings of the rotated weight's kernels: rotate.wgsl (GPUs) and
// weight_software.wgsl (software adapters' twins), which bind the same tensors in the same order;
// weight_grad_element, the per-element step of both weight_backward kernels.

struct Params {
    co: u32,
    a: u32,
    b: u32,
    // rotate.wgsl's rotate_forward: rows of rw_o per workgroup (weight_software.wgsl: unused).
    rb: u32,
    // weight_backward: ApproxSign's sqrt(2)*t, t^2 and k.
    c1: f32,
    t2: f32,
    k: f32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> w2: array<f32>;
@group(0) @binding(1) var<storage, read> r1: array<f32>;
@group(0) @binding(2) var<storage, read> r2: array<f32>;
@group(0) @binding(3) var<storage, read> wstats: array<f32>;
@group(0) @binding(4) var<storage, read_write> rw_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> w3_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> bw_out: array<f32>;
@group(0) @binding(7) var<storage, read> dbw: array<f32>;
@group(0) @binding(8) var<storage, read> rw_in: array<f32>;
@group(0) @binding(9) var<storage, read> w3_in: array<f32>;
@group(0) @binding(10) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(12) var<storage, read_write> drotate: array<f32>;

// Element i of weight_backward's first pass, in a channel with alpha_o and gate = |sin theta_o|:
// dw3 = max(0, k (sqrt(2) t - t^2 |w3|)) alpha_o dbw (ApproxSign) and dw2 = (1 - gate) dw3,
// parked in dweight until the channel sums are known. Returns the element's terms of the three
// channel sums: (dw3 * (rw - w2), dw2, dw2 * w2).
fn weight_grad_element(i: u32, alpha_o: f32, gate: f32) -> vec3<f32> {
    let g = dbw[i];
    let w3 = w3_in[i];
    let x2 = w2[i];
    let d3 = max(p.k * (p.c1 - p.t2 * abs(w3)), 0.0) * (alpha_o * g);
    let d2 = (1.0 - gate) * d3;
    dweight[i] = d2;
    return vec3<f32>(d3 * (rw_in[i] - x2), d2, d2 * x2);
}
