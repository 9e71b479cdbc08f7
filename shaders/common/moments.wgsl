// defines: welford, merge: one-pass (count, mean, M2) summaries of a set of values, shared by the
// BatchNorm statistics (batchnorm.wgsl, batchnorm_walk*.wgsl) and the software adapters'
// activation statistics (standardize_walk*.wgsl).

// Welford's update of the (count, mean, M2) summary s with the value v: one pass, no
// cancellation.
fn welford(s: vec3<f32>, v: f32) -> vec3<f32> {
    let count = s.x + 1.0;
    let d = v - s.y;
    let mean = s.y + d / count;
    return vec3<f32>(count, mean, s.z + d * (v - mean));
}

// Chan et al.: combines two (count, mean, M2) summaries.
fn merge(a: vec3<f32>, b: vec3<f32>) -> vec3<f32> {
    if b.x == 0.0 {
        return a;
    }
    if a.x == 0.0 {
        return b;
    }
    let n = a.x + b.x;
    let d = b.y - a.y;
    let f = b.x / n;
    return vec3<f32>(n, a.y + d * f, a.z + b.z + d * d * a.x * f);
}
