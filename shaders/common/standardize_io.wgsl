// defines: Params, p and the bindings of the standardisation kernels: standardize.wgsl and
// standardize_walk.wgsl (the software adapters' elementwise passes).

struct Params {
    rows: u32,
    len: u32,
    mode: u32,
    c1: f32,
    t2: f32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> alpha: array<f32>;
@group(0) @binding(2) var<storage, read> rotate: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(4) var<storage, read> stats_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad: array<f32>;
@group(0) @binding(7) var<storage, read_write> sums_out: array<f32>;
@group(0) @binding(8) var<storage, read> sums_in: array<f32>;
