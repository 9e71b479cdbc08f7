// Elementwise kernels: hardtanh, ReLU, residual add, and their backwards.
// 1D grid (common/grid.wgsl).
// add4 is the software adapters' add (gpu::KernelVariant::Software) where n % 4 == 0: one vec4
// per invocation. On lavapipe every storage access is a loop over the 8 SIMD lanes, and a vec4
// access is one such loop for 4 floats (measured 2.7x faster than add over 524,288 floats).
// #include "common/grid.wgsl"
// #include "common/hardtanh.wgsl"

struct Params {
    n: u32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out4: array<vec4<f32>>;

// out = clamp(a, -1, 1)
@compute @workgroup_size(256)
fn hardtanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out[i] = hardtanh(a[i]);
}

// a = forward input x, b = dy: out = dy where -1 < x < 1, else 0 (common/hardtanh.wgsl).
@compute @workgroup_size(256)
fn hardtanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out[i] = hardtanh_grad(a[i], b[i]);
}

@compute @workgroup_size(256)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out[i] = max(a[i], 0.0);
}

// a = forward input x, b = dy.
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out[i] = select(0.0, b[i], a[i] > 0.0);
}

// out = a + b (residual add; its backward passes dy to both inputs unchanged).
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out[i] = a[i] + b[i];
}

// out = a + b on vec4s: p.n counts vec4s here.
@compute @workgroup_size(256)
fn add4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if i >= p.n { return; }
    out4[i] = a4[i] + b4[i];
}
