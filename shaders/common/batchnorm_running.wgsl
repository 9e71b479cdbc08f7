// defines: running_rstd, batchnorm_apply: BatchNorm in inference mode, written once so that the
// float evaluation path (batchnorm.wgsl) and the packed engine (infer_ops.wgsl,
// infer_binconv.wgsl) round it the same way and give the same bits:
//   y = (x - running_mean) * (1 / sqrt(running_var + eps)) * gamma + beta.
// (The training forward applies the same expression with the batch statistics.) A BatchNorm
// folded into one scale and shift would round differently.

fn running_rstd(running_var: f32, eps: f32) -> f32 {
    return 1.0 / sqrt(running_var + eps);
}

fn batchnorm_apply(v: f32, mean: f32, rstd: f32, gamma: f32, beta: f32) -> f32 {
    return (v - mean) * rstd * gamma + beta;
}
