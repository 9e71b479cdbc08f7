// The 1-bit convolution of the RBNN layer's forward: y = alpha_o * conv2d(sign(a2), sign(w3)),
// computed on packed bits with XOR and countOneBits, exactly (integer counts). Values are ternary
// as torch.sign (-1, 0, +1) and packed as common/sign_bits.wgsl describes, so the result equals
// the float convolution of the same -1/0/+1 values with zero padding, bit for bit.
//
// Layouts: abits [N, H, W, Cw, 2] (channel-innermost), wbits [Co, kh*kw, Cw, 2], Cw = ceil(Ci/32).
//
// Entry points:
//   pack_activations  x [N,Ci,H,W], astats [N,2] -> abits: the bits of x - mean_s (whose sign
//                     is sign(a2) as std > 0). One invocation per word.
//   pack_activations4 the same bits on software adapters (gpu::KernelVariant::Software) where
//                     H*W % 4 == 0: one invocation per word of 4 consecutive pixels of a plane,
//                     x read as vec4s (on lavapipe every storage access is a loop over the 8
//                     SIMD lanes; a vec4 is one such loop for 4 floats).
//   pack_weights      w3 [Co,Ci,kh,kw] -> wbits. One invocation per word.
//   binconv           abits, wbits, alpha -> y [N,Co,OH,OW]: the tiled implicit GEMM of
//                     common/binary_tile.wgsl. The fallback for adapters without subgroups.
//   direct            the same result on groups of 8 subgroup lanes (see its section below).
// #include "common/conv_params.wgsl"
// #include "common/grid.wgsl"
// #include "common/sign_bits.wgsl"
// #include "common/binary_tile.wgsl"
// #include "common/lane_groups.wgsl"

var<immediate> p: ConvParams;

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> astats: array<f32>;
@group(0) @binding(2) var<storage, read_write> abits_out: array<u32>;
@group(0) @binding(3) var<storage, read> w3: array<f32>;
@group(0) @binding(4) var<storage, read_write> wbits_out: array<u32>;
@group(0) @binding(5) var<storage, read> abits: array<vec2<u32>>;
@group(0) @binding(6) var<storage, read> wbits: array<vec2<u32>>;
@group(0) @binding(7) var<storage, read> alpha: array<f32>;
@group(0) @binding(8) var<storage, read_write> y: array<f32>;
@group(0) @binding(9) var<storage, read> x4: array<vec4<f32>>;

fn activation_pair(i: u32) -> vec2<u32> {
    return abits[i];
}

fn weight_pair(i: u32) -> vec2<u32> {
    return wbits[i];
}

// Invocation i -> word (img, c, yy, xx) with xx fastest, so the 32 reads of each invocation are
// coalesced across invocations.
@compute @workgroup_size(256)
fn pack_activations(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let cw = words_per_tap(p.ci);
    if i >= p.n * cw * p.h * p.w {
        return;
    }
    let e = nchw(i, cw, p.h, p.w);
    let img = e.x;
    let c = e.y;
    let yy = e.z;
    let xx = e.w;
    let mean = astats[2u * img];
    var word = vec2<u32>(0u);
    let c0 = c * 32u;
    let count = min(32u, p.ci - c0);
    for (var j = 0u; j < count; j++) {
        word |= sign_bits(x[((img * p.ci + c0 + j) * p.h + yy) * p.w + xx] - mean, j);
    }
    let out = (((img * p.h + yy) * p.w + xx) * cw + c) * 2u;
    abits_out[out] = word.x;
    abits_out[out + 1u] = word.y;
}

// Invocation i -> words (img, c, pixels 4q .. 4q+3 of the plane) with q fastest; x4 is x.
@compute @workgroup_size(256)
fn pack_activations4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let cw = words_per_tap(p.ci);
    let quads = p.h * p.w / 4u;
    if i >= p.n * cw * quads {
        return;
    }
    let q = i % quads;
    let t = i / quads;
    let c = t % cw;
    let img = t / cw;
    let mean = astats[2u * img];
    var w0 = vec2<u32>(0u);
    var w1 = vec2<u32>(0u);
    var w2 = vec2<u32>(0u);
    var w3 = vec2<u32>(0u);
    let c0 = c * 32u;
    let count = min(32u, p.ci - c0);
    for (var j = 0u; j < count; j++) {
        let v = x4[(img * p.ci + c0 + j) * quads + q] - mean;
        w0 |= sign_bits(v.x, j);
        w1 |= sign_bits(v.y, j);
        w2 |= sign_bits(v.z, j);
        w3 |= sign_bits(v.w, j);
    }
    let out = ((img * p.h * p.w + 4u * q) * cw + c) * 2u;
    let step = cw * 2u;
    abits_out[out] = w0.x;
    abits_out[out + 1u] = w0.y;
    abits_out[out + step] = w1.x;
    abits_out[out + step + 1u] = w1.y;
    abits_out[out + 2u * step] = w2.x;
    abits_out[out + 2u * step + 1u] = w2.y;
    abits_out[out + 3u * step] = w3.x;
    abits_out[out + 3u * step + 1u] = w3.y;
}

// Invocation i -> word (o, tap, c) with c fastest.
@compute @workgroup_size(256)
fn pack_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    let taps = p.kh * p.kw;
    let cw = words_per_tap(p.ci);
    if i >= p.co * taps * cw {
        return;
    }
    let c = i % cw;
    let t = i / cw;
    let tap = t % taps;
    let o = t / taps;
    var word = vec2<u32>(0u);
    let c0 = c * 32u;
    let count = min(32u, p.ci - c0);
    for (var j = 0u; j < count; j++) {
        word |= sign_bits(w3[(o * p.ci + c0 + j) * taps + tap], j);
    }
    wbits_out[2u * i] = word.x;
    wbits_out[2u * i + 1u] = word.y;
}

@compute @workgroup_size(WG)
fn binconv(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m0 = wid.x * BM;
    let n0 = wid.y * BN;
    let dots = binary_tile_dots(p, lid.x, m0, n0);
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let e = tile_element(p, lid.x, m0, n0, i, j);
            if e.ok {
                y[e.index] = alpha[e.o] * f32(dots[i * 4u + j]);
            }
        }
    }
}

// ---- Direct kernel (adapters with subgroups) ----
//
// The same groups of 8 subgroup lanes as conv_direct.wgsl (common/lane_groups.wgsl): lane = one
// of 8 output channels, register tile = 8x8 output pixels of one image. Per word of channels:
// the lane's weight pairs of every tap (own loads), then the tile's input window, each row loaded
// as segments of 8 pixels (one pair per lane) and broadcast tap by tap with shuffles. The tap
// geometry is compiled in (DKH, DKW, DS; the host allows kernels up to 3x3, stride 1 or 2),
// so every tap and tile loop unrolls into registers.

override DKH: u32 = 3u;
override DKW: u32 = 3u;
override DS: u32 = 1u;
override DKK: u32 = DKH * DKW;
override DROWS: u32 = 7u * DS + DKH;
override DSEGS: u32 = (7u * DS + DKW + 7u) / 8u;

@compute @workgroup_size(64)
fn direct(ids: LaneIds) {
    let gl = group_lane(ids);
    let lane = gl.lane;
    let base = gl.base;
    let tile = direct_tile(gl, p.n, p.co, p.oh, p.ow);
    let ty0 = tile.ty0;
    let tx0 = tile.tx0;
    let img = tile.img;
    let oc = tile.oc;
    let oc_ok = tile.ok;
    let cw = words_per_tap(p.ci);
    let iy0 = i32(ty0 * DS) - i32(p.pad);
    let ix0 = i32(tx0 * DS) - i32(p.pad);

    // acc[ty][tx]: the dot product at output pixel (ty0 + ty, tx0 + tx) of channel oc.
    var acc: array<array<i32, 8>, 8>;
    for (var j = 0u; j < cw; j++) {
        var wt: array<vec2<u32>, 9>;
        for (var k = 0u; k < DKK; k++) {
            let wi = (oc * DKK + k) * cw + j;
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
                let idx = ((img * p.h + u32(iy)) * p.w + u32(ix)) * cw + j;
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
