// defines: Params, p and the bindings of the channel dot kernels: channel_dot.wgsl (the GPU
// variant and the `finish` both variants share) and channel_dot_walk.wgsl (the software
// adapters' first stage).

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    chunks: u32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials_out: array<f32>;
@group(0) @binding(3) var<storage, read> partials_in: array<f32>;
@group(0) @binding(4) var<storage, read> div: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
