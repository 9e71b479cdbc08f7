// The packed engine's 1-bit convolution with its epilogue fused (src/infer/kernels.rs):
//   y = [hardtanh]( [BN](alpha_o * dot) [+ residual] )
// where dot is the exact ternary dot product of the packed activations and weights (XOR and
// countOneBits, as shaders/binconv.wgsl: sign plane + nonzero plane per 32 channels, so exact
// zeros, channel tails and padded taps contribute 0), BN is the BatchNorm with running
// statistics computed exactly as shaders/batchnorm.wgsl's normalize_running computes it
// (bn [Co, 4] = running_mean, running_var, gamma, beta; skipped where a max pool sits between the
// conv and its BatchNorm), and the residual is
//   mode 0: none
//   mode 1: identity, res [N, Co, OH, OW]
//   mode 2: option A of resnet20, res [N, RC, RH, RW]: res[n, o - pad, 2*oy, 2*ox] for the
//           channels o in [pad, pad + RC) with pad = (Co - RC) / 2, 0 elsewhere.
//
// Layouts: abits [N, H, W, Cw, 2], wbits [Co, kh*kw, Cw, 2] (Cw = ceil(Ci/32)), y NCHW.
// Tiling as shaders/binconv.wgsl: each workgroup computes BM pixels x BN channels, staging BK
// word pairs of both operands in workgroup memory; each invocation keeps a 4x4 micro-tile of
// counters at rows tx + i*TX and columns ty + j*TY.

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
override TX: u32 = BM / 4u;
override TY: u32 = BN / 4u;
override WG: u32 = TX * TY;
override A_SIZE: u32 = BK * BM;
override B_SIZE: u32 = BK * BN;

struct Params {
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
    // Words per tap: ceil(ci / 32).
    cw: u32,
    // N * OH * OW.
    rows: u32,
    // kh * kw * cw.
    kwords: u32,
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

var<workgroup> As: array<vec2<u32>, A_SIZE>;
var<workgroup> Bs: array<vec2<u32>, B_SIZE>;

// The residual term of output (img, o, pixel pix of the OH x OW plane).
fn residual(img: u32, o: u32, pix: u32) -> f32 {
    if p.residual == 1u {
        return res[(img * p.co + o) * p.oh * p.ow + pix];
    }
    if p.residual == 2u {
        let pad = (p.co - p.rc) / 2u;
        if o >= pad && o < pad + p.rc {
            let oy = pix / p.ow;
            let ox = pix - oy * p.ow;
            return res[((img * p.rc + o - pad) * p.rh + 2u * oy) * p.rw + 2u * ox];
        }
    }
    return 0.0;
}

@compute @workgroup_size(WG)
fn binconv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let tx = tid % TX;
    let ty = tid / TX;
    let m0 = wid.x * BM;
    let n0 = wid.y * BN;

    // This invocation always stages pixel row lr of the A tile (WG is a multiple of BM): decode
    // it once.
    let lr = tid % BM;
    let m = m0 + lr;
    let row_ok = m < p.rows;
    let mm = select(0u, m, row_ok);
    let ox = mm % p.ow;
    let t = mm / p.ow;
    let oy = t % p.oh;
    let img = t / p.oh;
    let iy0 = i32(oy * p.stride) - i32(p.pad);
    let ix0 = i32(ox * p.stride) - i32(p.pad);
    let img_base = img * p.h * p.w;
    // ... and channel column lc of the B tile.
    let lc = tid % BN;
    let oc = n0 + lc;
    let col_ok = oc < p.co;

    var nz: array<u32, 16>;
    var neg: array<u32, 16>;
    for (var e = 0u; e < 16u; e++) {
        nz[e] = 0u;
        neg[e] = 0u;
    }

    for (var k0 = 0u; k0 < p.kwords; k0 += BK) {
        for (var kk = tid / BM; kk < BK; kk += WG / BM) {
            let k = k0 + kk;
            var v = vec2<u32>(0u);
            if row_ok && k < p.kwords {
                let tap = k / p.cw;
                let c = k - tap * p.cw;
                let ki = tap / p.kw;
                let iy = iy0 + i32(ki);
                let ix = ix0 + i32(tap - ki * p.kw);
                // A padded tap stays (0, 0): it contributes 0 like the float conv's zero padding.
                if iy >= 0 && iy < i32(p.h) && ix >= 0 && ix < i32(p.w) {
                    let word = ((img_base + u32(iy) * p.w + u32(ix)) * p.cw + c) * 2u;
                    v = vec2<u32>(abits[word], abits[word + 1u]);
                }
            }
            As[kk * BM + lr] = v;
        }
        for (var kk = tid / BN; kk < BK; kk += WG / BN) {
            let k = k0 + kk;
            var v = vec2<u32>(0u);
            if col_ok && k < p.kwords {
                let word = (oc * p.kwords + k) * 2u;
                v = vec2<u32>(wbits[word], wbits[word + 1u]);
            }
            Bs[kk * BN + lc] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var av: array<vec2<u32>, 4>;
            var bv: array<vec2<u32>, 4>;
            for (var i = 0u; i < 4u; i++) {
                av[i] = As[kk * BM + tx + i * TX];
                bv[i] = Bs[kk * BN + ty + i * TY];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    let both = av[i].y & bv[j].y;
                    nz[i * 4u + j] += countOneBits(both);
                    neg[i * 4u + j] += countOneBits((av[i].x ^ bv[j].x) & both);
                }
            }
        }
        workgroupBarrier();
    }

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
        let o = min(n0 + ty + j * TY, p.co - 1u);
        al[j] = alpha[o];
        if p.batchnorm == 1u {
            mean[j] = bn[4u * o];
            rstd[j] = 1.0 / sqrt(bn[4u * o + 1u] + p.eps);
            gamma[j] = bn[4u * o + 2u];
            beta[j] = bn[4u * o + 3u];
        }
    }
    let plane = p.oh * p.ow;
    for (var i = 0u; i < 4u; i++) {
        let mi = m0 + tx + i * TX;
        if mi >= p.rows {
            continue;
        }
        let im = mi / plane;
        let pix = mi - im * plane;
        for (var j = 0u; j < 4u; j++) {
            let o = n0 + ty + j * TY;
            if o >= p.co {
                continue;
            }
            let dot = i32(nz[i * 4u + j]) - 2 * i32(neg[i * 4u + j]);
            // The float path stores alpha * dot before its BatchNorm reads it; the max (an
            // identity on finite values) keeps a compiler from fusing the product into the
            // subtraction below, which would round it differently.
            var v = max(al[j] * f32(dot), -3.4028235e38);
            if p.batchnorm == 1u {
                v = (v - mean[j]) * rstd[j] * gamma[j] + beta[j];
            }
            if p.residual != 0u {
                v += residual(im, o, pix);
            }
            if p.hardtanh == 1u {
                v = clamp(v, -1.0, 1.0);
            }
            y[(im * p.co + o) * plane + pix] = v;
        }
    }
}
