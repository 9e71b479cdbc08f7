// defines: WeightGroup, weight_group, weight_taps, store_weight_tile: what the two direct weight
// gradients (conv_direct.wgsl's direct_weight and conv_weight4.wgsl's direct_weight4) share.
// Uses the includer's immediates `p` (ConvParams), its `out: array<f32>`, and
// common/direct_window.wgsl's geometry.

// The work of one group of a weight-gradient kernel (direct_weight and direct_weight4): lane =
// one of 8 input channels (ci), a register tile of 16 output channels from o0 on x the taps,
// over the 8-column output strips strip_begin..strip_end (p.aux strips per chunk). Groups past
// the last block repeat its work and store nothing (`stores` false).
struct WeightGroup {
    ci: u32,
    ci_ok: bool,
    o0: u32,
    chunk: u32,
    strips_x: u32,
    strip_begin: u32,
    strip_end: u32,
    stores: bool,
}

fn weight_group(gl: GroupLane) -> WeightGroup {
    let iblocks = (p.ci + 7u) / 8u;
    let oblocks = (p.co + 15u) / 16u;
    let strips_x = (p.ow + 7u) / 8u;
    let strips = p.n * strips_x;
    let chunks = (strips + p.aux - 1u) / p.aux;
    let total = chunks * oblocks * iblocks;
    let gc = min(gl.group, total - 1u);
    let ib = gc % iblocks;
    let t = gc / iblocks;
    let chunk = t / oblocks;
    let ci = ib * 8u + gl.lane;
    return WeightGroup(
        ci,
        ci < p.ci,
        (t % oblocks) * 16u,
        chunk,
        strips_x,
        chunk * p.aux,
        min(strips, (chunk + 1u) * p.aux),
        gl.group < total,
    );
}

// Adds dy value dv of strip column px times the input under each tap to the lane's tap sums a.
fn weight_taps(a: ptr<function, array<f32, 9>>, dv: f32, px: u32, win: ptr<function, array<array<f32, 17>, 3>>) {
    for (var r = 0u; r < DKH; r++) {
        for (var c = 0u; c < DKW; c++) {
            (*a)[r * DKW + c] = fma(dv, (*win)[r][px * DS + c], (*a)[r * DKW + c]);
        }
    }
}

// Writes a weight-gradient tile to the includer's `out` (array<f32>): chunk wg.chunk's partial
// sums [chunk][co][ci][taps] (or dw itself with one chunk).
fn store_weight_tile(wg: WeightGroup, acc: ptr<function, array<array<f32, 9>, 16>>) {
    let cols = p.ci * DKK;
    let out_base = wg.chunk * p.co * cols;
    for (var o = 0u; o < 16u; o++) {
        if wg.ci_ok && wg.o0 + o < p.co && wg.stores {
            for (var k = 0u; k < DKK; k++) {
                out[out_base + (wg.o0 + o) * cols + wg.ci * DKK + k] = (*acc)[o][k];
            }
        }
    }
}
