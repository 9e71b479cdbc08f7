// The packed engine's 1-bit convolution with its epilogue fused (src/infer/kernels.rs):
//   y = [hardtanh]( [BN](alpha_o * dot) [+ residual] )
// where dot is the exact ternary dot product of the packed activations and weights (XOR and
// countOneBits, common/binary_tile.wgsl as in shaders/binconv.wgsl: sign plane + nonzero plane
// per 32 channels, so exact zeros, channel tails and padded taps contribute 0), BN is the
// BatchNorm with running statistics computed exactly as shaders/batchnorm.wgsl's
// normalize_running computes it (common/batchnorm_running.wgsl)
// (bn [Co, 4] = running_mean, running_var, gamma, beta; skipped where a max pool sits between the
// conv and its BatchNorm), and the residual is
//   mode 0: none
//   mode 1: identity, res [N, Co, OH, OW]
//   mode 2: option A of resnet20, res [N, RC, RH, RW]: res[n, o - pad, 2*oy, 2*ox] for the
//           channels o in [pad, pad + RC) with pad = (Co - RC) / 2, 0 elsewhere.
//
// Layouts: abits [N, H, W, Cw, 2], wbits [Co, kh*kw, Cw, 2] (Cw = ceil(Ci/32)), y NCHW.
// #include "common/conv_params.wgsl"
// #include "common/binary_tile.wgsl"
// #include "common/batchnorm_running.wgsl"

// The convolution's shape (conv.rows = N*OH*OW), then the epilogue's terms.
struct Params {
    conv: ConvParams,
    residual: u32,
    rc: u32,
    rh: u32,
    rw: u32,
    hardtanh: u32,
    batchnorm: u32,
    eps: f32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> abits: array<u32>;
@group(0) @binding(1) var<storage, read> wbits: array<u32>;
@group(0) @binding(2) var<storage, read> alpha: array<f32>;
@group(0) @binding(3) var<storage, read> bn: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn activation_pair(i: u32) -> vec2<u32> {
    return vec2<u32>(abits[2u * i], abits[2u * i + 1u]);
}

fn weight_pair(i: u32) -> vec2<u32> {
    return vec2<u32>(wbits[2u * i], wbits[2u * i + 1u]);
}

// The residual term of output (img, o, pixel pix of the OH x OW plane).
fn residual(img: u32, o: u32, pix: u32) -> f32 {
    let q = p.conv;
    if p.residual == 1u {
        return res[(img * q.co + o) * q.oh * q.ow + pix];
    }
    if p.residual == 2u {
        let pad = (q.co - p.rc) / 2u;
        if o >= pad && o < pad + p.rc {
            let oy = pix / q.ow;
            let ox = pix - oy * q.ow;
            return res[((img * p.rc + o - pad) * p.rh + 2u * oy) * p.rw + 2u * ox];
        }
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn binconv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let ty = tid / TX;
    let m0 = wid.x * BM;
    let n0 = wid.y * BN;
    let q = p.conv;

    let dots = binary_tile_dots(q, tid, m0, n0);

    // The epilogue, with the per-channel terms of this invocation's 4 columns loaded once. It
    // repeats the float path's operations one by one (binconv's alpha * dot, normalize_running,
    // add, hardtanh) so that both give the same bits: a different rounding would move some
    // activations across their sample's mean, and its sign, in the next layer.
    var al: array<f32, 4>;
    var mean: array<f32, 4>;
    var rstd: array<f32, 4>;
    var gamma: array<f32, 4>;
    var beta: array<f32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let o = min(n0 + ty + j * TY, q.co - 1u);
        al[j] = alpha[o];
        if p.batchnorm == 1u {
            mean[j] = bn[4u * o];
            rstd[j] = running_rstd(bn[4u * o + 1u], p.eps);
            gamma[j] = bn[4u * o + 2u];
            beta[j] = bn[4u * o + 3u];
        }
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let e = tile_element(q, tid, m0, n0, i, j);
            if !e.ok {
                continue;
            }
            // The float path stores alpha * dot before its BatchNorm reads it; the max (an
            // identity on finite values) keeps a compiler from fusing the product into the
            // subtraction below, which would round it differently.
            var v = max(al[j] * f32(dots[i * 4u + j]), -3.4028235e38);
            if p.batchnorm == 1u {
                v = batchnorm_apply(v, mean[j], rstd[j], gamma[j], beta[j]);
            }
            if p.residual != 0u {
                v += residual(e.img, e.o, e.pix);
            }
            if p.hardtanh == 1u {
                v = clamp(v, -1.0, 1.0);
            }
            y[e.index] = v;
        }
    }
}
