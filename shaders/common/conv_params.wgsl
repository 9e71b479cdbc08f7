// defines: ConvParams, the immediates of every convolution kernel (conv_gemm, conv_direct,
// conv_coop, binconv; infer_binconv extends it), built on the host by ops::conv::ConvParams.
// The shape of one convolution: x [N, CI, H, W], w [CO, CI, KH, KW], y [N, CO, OH, OW], zero
// padding `pad` on every side, and two values whose meaning depends on the entry point.
struct ConvParams {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    // GEMM rows: N*OH*OW (the forwards; the reduction of the weight gradients), or the length
    // of dw (reduce_splits).
    rows: u32,
    // The data gradients: column tiles per phase. The weight gradients: reduction elements (or
    // 8-column strips) per split. reduce_splits: the number of splits.
    aux: u32,
}
