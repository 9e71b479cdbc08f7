// defines: Params, p, the bindings and write_dot of the channel dot kernels: channel_dot.wgsl (the
// GPU variant) and channel_dot_walk.wgsl (the software adapters').

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

// out[c] = total / div[c], 0 where div[c] is 0.
fn write_dot(c: u32, total: f32) {
    let d = div[c];
    out[c] = select(0.0, total / d, d != 0.0);
}
