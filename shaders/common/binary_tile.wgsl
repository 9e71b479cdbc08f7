// defines: As, Bs (workgroup memory), binary_tile_dots, TileElement, tile_element: the tiled
// 1-bit convolution shared by binconv.wgsl's `binconv` (training) and infer_binconv.wgsl's
// `binconv` (the packed engine, with its epilogue fused).
//
// An implicit GEMM over packed operands (common/sign_bits.wgsl): rows = N*OH*OW output pixels,
// columns = Co output channels, reduction = kh*kw*Cw word pairs (tap-major), in the tiles of
// common/gemm_tile.wgsl: each invocation keeps a 4x4 micro-tile of counters at rows tx + i*TX
// and columns ty + j*TY (adjacent invocations write adjacent pixels of one channel). The dot
// product of two word pairs is popcount(nz) - 2 * popcount((sa ^ sw) & nz), nz = ma & mw (the
// products that are not 0, minus twice those that are -1), so the result equals the float
// convolution of the same -1/0/+1 values with zero padding, exactly.
//
// The including shader defines the loads of its packed operands (their bindings differ):
//   fn activation_pair(i: u32) -> vec2<u32>   pair i of abits [N, H, W, Cw]
//   fn weight_pair(i: u32) -> vec2<u32>       pair i of wbits [Co, kh*kw, Cw]
// #include "common/conv_params.wgsl"
// #include "common/gemm_tile.wgsl"
// #include "common/sign_bits.wgsl"

var<workgroup> As: array<vec2<u32>, A_SIZE>;
var<workgroup> Bs: array<vec2<u32>, B_SIZE>;

// The micro-tile of invocation tid in the workgroup tile at row m0 and column n0: dots[i * 4 + j]
// is the dot product at output pixel m0 + tx + i*TX and channel n0 + ty + j*TY (tx = tid % TX,
// ty = tid / TX; q.rows = N*OH*OW). Call from uniform control flow (it has barriers).
fn binary_tile_dots(q: ConvParams, tid: u32, m0: u32, n0: u32) -> array<i32, 16> {
    let tx = tid % TX;
    let ty = tid / TX;
    let cw = words_per_tap(q.ci);
    let kwords = q.kh * q.kw * cw;

    // This invocation always stages pixel row lr of the A tile (WG is a multiple of BM): decode
    // it once.
    let lr = tid % BM;
    let m = m0 + lr;
    let row_ok = m < q.rows;
    let mm = select(0u, m, row_ok);
    let ox = mm % q.ow;
    let t = mm / q.ow;
    let oy = t % q.oh;
    let img = t / q.oh;
    let iy0 = i32(oy * q.stride) - i32(q.pad);
    let ix0 = i32(ox * q.stride) - i32(q.pad);
    let img_base = img * q.h * q.w;
    // ... and channel column lc of the B tile.
    let lc = tid % BN;
    let oc = n0 + lc;
    let col_ok = oc < q.co;

    var nz: array<u32, 16>;
    var neg: array<u32, 16>;
    for (var e = 0u; e < 16u; e++) {
        nz[e] = 0u;
        neg[e] = 0u;
    }

    for (var k0 = 0u; k0 < kwords; k0 += BK) {
        for (var kk = tid / BM; kk < BK; kk += WG / BM) {
            let k = k0 + kk;
            var v = vec2<u32>(0u);
            if row_ok && k < kwords {
                let tap = k / cw;
                let c = k - tap * cw;
                let ki = tap / q.kw;
                let iy = iy0 + i32(ki);
                let ix = ix0 + i32(tap - ki * q.kw);
                // A padded tap stays (0, 0): it contributes 0 like the float conv's zero padding.
                if iy >= 0 && iy < i32(q.h) && ix >= 0 && ix < i32(q.w) {
                    v = activation_pair((img_base + u32(iy) * q.w + u32(ix)) * cw + c);
                }
            }
            As[kk * BM + lr] = v;
        }
        for (var kk = tid / BN; kk < BK; kk += WG / BN) {
            let k = k0 + kk;
            var v = vec2<u32>(0u);
            if col_ok && k < kwords {
                v = weight_pair(oc * kwords + k);
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

    var dots: array<i32, 16>;
    for (var e = 0u; e < 16u; e++) {
        dots[e] = i32(nz[e]) - 2 * i32(neg[e]);
    }
    return dots;
}

// Where element (i, j) of invocation tid's micro-tile goes in y [N, Co, OH, OW]: image img,
// channel o, pixel pix of the OH x OW plane, their flat index, and whether the element exists.
struct TileElement {
    ok: bool,
    img: u32,
    o: u32,
    pix: u32,
    index: u32,
}

fn tile_element(q: ConvParams, tid: u32, m0: u32, n0: u32, i: u32, j: u32) -> TileElement {
    let m = m0 + tid % TX + i * TX;
    let o = n0 + tid / TX + j * TY;
    let plane = q.oh * q.ow;
    let img = m / plane;
    let pix = m - img * plane;
    return TileElement(m < q.rows && o < q.co, img, o, pix, (img * q.co + o) * plane + pix);
}
