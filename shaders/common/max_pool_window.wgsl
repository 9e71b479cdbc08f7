// defines: max_pool_window, the 2x2 stride-2 max-pool window of an output element, shared by the
// float path (pool.wgsl) and the packed engine (infer_ops.wgsl).

// Output element i of [P, H/2, W/2] (P = N*C planes of H x W, sizes floored as PyTorch):
// (its plane, the index of its window's top-left input in [P, H, W]).
fn max_pool_window(i: u32, h: u32, w: u32) -> vec2<u32> {
    let ow = w / 2u;
    let oh = h / 2u;
    let ox = i % ow;
    let t = i / ow;
    let oy = t % oh;
    let plane = t / oh;
    return vec2<u32>(plane, (plane * h + 2u * oy) * w + 2u * ox);
}
