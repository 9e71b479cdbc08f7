// defines: plane_sum, the in-order sum of one plane of the including shader's `x: array<f32>`,
// shared by the float path's global average pool (pool.wgsl) and the packed engine's
// (infer_ops.wgsl avgpool_batchnorm), so both give the same bits.

// x[first] + x[first + 1] + ... + x[first + len - 1], in that order.
fn plane_sum(first: u32, len: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < len; k++) {
        s += x[first + k];
    }
    return s;
}
