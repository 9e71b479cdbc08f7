// The 1-bit convolution of the RBNN layer's forward: y = alpha_o * conv2d(sign(a2), sign(w3)),
// computed on packed bits with XOR and countOneBits, exactly (integer counts).
//
// Values are ternary, as torch.sign: -1, 0 or +1. Each group of 32 input channels is packed into
// a pair of u32 words (channel c -> bit c % 32 of word c / 32):
//   .x sign plane:    bit set where the value is negative
//   .y nonzero plane: bit set where the value is not 0
// and the dot product of two such groups is
//   popcount(nz) - 2 * popcount((sa ^ sw) & nz),  nz = ma & mw
// (the products that are not 0, minus twice those that are -1). An exact zero, a channel past Ci
// in the last word, and a padded tap (a pair loaded as (0, 0)) all contribute exactly 0, so the
// result equals the float convolution of the same -1/0/+1 values with zero padding, bit for bit.
//
// Layouts: abits [N, H, W, Cw, 2] (channel-innermost), wbits [Co, kh*kw, Cw, 2], Cw = ceil(Ci/32).
//
// Entry points:
//   pack_activations  x [N,Ci,H,W], astats [N,2] -> abits: the bits of x - mean_s (whose sign
//                     is sign(a2) as std > 0). One invocation per word.
//   pack_weights      w3 [Co,Ci,kh,kw] -> wbits. One invocation per word.
//   binconv           abits, wbits, alpha -> y [N,Co,OH,OW]: implicit GEMM, rows = N*OH*OW
//                     pixels, columns = Co, reduction = kh*kw*Cw word pairs (tap-major). Each
//                     workgroup computes a BM x BN tile, staging BK word pairs of both operands
//                     in workgroup memory; each invocation keeps a 4x4 micro-tile of counters at
//                     rows tx + i*TX and columns ty + j*TY (adjacent invocations write adjacent
//                     pixels of one channel). The fallback for adapters without subgroups.
//   direct            the same result on groups of 8 subgroup lanes (see its section below).

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
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> astats: array<f32>;
@group(0) @binding(2) var<storage, read_write> abits_out: array<u32>;
@group(0) @binding(3) var<storage, read> w3: array<f32>;
@group(0) @binding(4) var<storage, read_write> wbits_out: array<u32>;
@group(0) @binding(5) var<storage, read> abits: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> wbits: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> alpha: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;

// (sign bit, nonzero bit) of v at bit position j.
fn bits(v: f32, j: u32) -> vec2<u32> {
    return vec2<u32>(select(0u, 1u << j, v < 0.0), select(0u, 1u << j, v != 0.0));
}

// Invocation i -> word (img, c, yy, xx) with xx fastest, so the 32 reads of each invocation are
// coalesced across invocations.
@compute @workgroup_size(256)
fn pack_activations(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.cw * p.h * p.w {
        return;
    }
    let xx = i % p.w;
    let t = i / p.w;
    let yy = t % p.h;
    let t2 = t / p.h;
    let c = t2 % p.cw;
    let img = t2 / p.cw;
    let mean = astats[2u * img];
    var word = vec2<u32>(0u);
    let c0 = c * 32u;
    let count = min(32u, p.ci - c0);
    for (var j = 0u; j < count; j++) {
        word |= bits(x[((img * p.ci + c0 + j) * p.h + yy) * p.w + xx] - mean, j);
    }
    let out = (((img * p.h + yy) * p.w + xx) * p.cw + c) * 2u;
    abits_out[out] = word.x;
    abits_out[out + 1u] = word.y;
}

// Invocation i -> word (o, tap, c) with c fastest.
@compute @workgroup_size(256)
fn pack_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let taps = p.kh * p.kw;
    if i >= p.co * taps * p.cw {
        return;
    }
    let c = i % p.cw;
    let t = i / p.cw;
    let tap = t % taps;
    let o = t / taps;
    var word = vec2<u32>(0u);
    let c0 = c * 32u;
    let count = min(32u, p.ci - c0);
    for (var j = 0u; j < count; j++) {
        word |= bits(w3[(o * p.ci + c0 + j) * taps + tap], j);
    }
    wbits_out[2u * i] = word.x;
    wbits_out[2u * i + 1u] = word.y;
}

var<workgroup> As: array<vec2<u32>, A_SIZE>;
var<workgroup> Bs: array<vec2<u32>, B_SIZE>;

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
                    v = abits[(img_base + u32(iy) * p.w + u32(ix)) * p.cw + c];
                }
            }
            As[kk * BM + lr] = v;
        }
        for (var kk = tid / BN; kk < BK; kk += WG / BN) {
            let k = k0 + kk;
            var v = vec2<u32>(0u);
            if col_ok && k < p.kwords {
                v = wbits[oc * p.kwords + k];
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
            y[(im * p.co + o) * plane + pix] = alpha[o] * f32(dot);
        }
    }
}

// ---- Direct kernel (adapters with subgroups) ----
//
// The same groups of 8 subgroup lanes as conv.wgsl's direct kernels (see there why): lane = one
// of 8 output channels, register tile = 8x8 output pixels of one image. Per word of channels:
// the lane's weight pairs of every tap (own loads), then the tile's input window, each row loaded
// as segments of 8 pixels (one pair per lane) and broadcast tap by tap with shuffles. The tap
// geometry is compiled in (DKH, DKW, DS; the host allows kernels up to 3x3, stride 1 or 2),
// so every tap and tile loop unrolls into registers.

const DIRECT_GROUPS: u32 = 8u;
override DKH: u32 = 3u;
override DKW: u32 = 3u;
override DS: u32 = 1u;
override DKK: u32 = DKH * DKW;
override DROWS: u32 = 7u * DS + DKH;
override DSEGS: u32 = (7u * DS + DKW + 7u) / 8u;

@compute @workgroup_size(64)
fn direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let lane = sg_lane & 7u;
    let base = sg_lane & ~7u;
    let group = sg_id * (sg_size / 8u) + sg_lane / 8u;
    let tiles_x = (p.ow + 7u) / 8u;
    let tiles_y = (p.oh + 7u) / 8u;
    let cblocks = (p.co + 7u) / 8u;
    let total = p.n * tiles_y * tiles_x * cblocks;
    let g = (wid.x + wid.y * nwg.x) * DIRECT_GROUPS + group;
    let gc = min(g, total - 1u);
    let cb = gc % cblocks;
    var t = gc / cblocks;
    let tx0 = (t % tiles_x) * 8u;
    t /= tiles_x;
    let ty0 = (t % tiles_y) * 8u;
    let img = t / tiles_y;
    let oc = cb * 8u + lane;
    let oc_ok = oc < p.co && g < total;
    let iy0 = i32(ty0 * DS) - i32(p.pad);
    let ix0 = i32(tx0 * DS) - i32(p.pad);

    // acc[ty][tx]: the dot product at output pixel (ty0 + ty, tx0 + tx) of channel oc.
    var acc: array<array<i32, 8>, 8>;
    for (var j = 0u; j < p.cw; j++) {
        var wt: array<vec2<u32>, 9>;
        for (var k = 0u; k < DKK; k++) {
            let wi = (oc * DKK + k) * p.cw + j;
            wt[k] = select(vec2<u32>(0u), wbits[select(0u, wi, oc_ok)], oc_ok);
        }
        // rows[k][s]: the pair of input pixel (iy0 + k, ix0 + 8 s + lane), (0, 0) outside.
        var rows: array<array<vec2<u32>, 3>, 17>;
        for (var k = 0u; k < DROWS; k++) {
            let iy = iy0 + i32(k);
            let row_ok = iy >= 0 && iy < i32(p.h) && k % DS < DKH;
            for (var s = 0u; s < DSEGS; s++) {
                let ix = ix0 + i32(s * 8u + lane);
                let ok = row_ok && ix >= 0 && ix < i32(p.w);
                let idx = ((img * p.h + u32(iy)) * p.w + u32(ix)) * p.cw + j;
                rows[k][s] = select(vec2<u32>(0u), abits[select(0u, idx, ok)], ok);
            }
        }
        for (var ty = 0u; ty < 8u; ty++) {
            for (var tx = 0u; tx < 8u; tx++) {
                var a = acc[ty][tx];
                for (var r = 0u; r < DKH; r++) {
                    for (var c = 0u; c < DKW; c++) {
                        let m = tx * DS + c;
                        let v = subgroupShuffle(rows[ty * DS + r][m / 8u], base + (m & 7u));
                        let w = wt[r * DKW + c];
                        let both = v.y & w.y;
                        a += i32(countOneBits(both)) - 2 * i32(countOneBits((v.x ^ w.x) & both));
                    }
                }
                acc[ty][tx] = a;
            }
        }
    }

    let plane = p.oh * p.ow;
    let out_base = (img * p.co + oc) * plane;
    let scale = alpha[select(0u, oc, oc_ok)];
    for (var ty = 0u; ty < 8u; ty++) {
        for (var tx = 0u; tx < 8u; tx++) {
            let yy = ty0 + ty;
            let xx = tx0 + tx;
            if oc_ok && yy < p.oh && xx < p.ow {
                y[out_base + yy * p.ow + xx] = scale * f32(acc[ty][tx]);
            }
        }
    }
}
