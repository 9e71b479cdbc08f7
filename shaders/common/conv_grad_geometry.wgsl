// defines: GemmIds, DataGradPhase, data_grad_phase, PhaseRow, phase_row, PhaseTap, phase_tap,
// phase_pixel_index (the stride phases of the data gradient) and WeightGradTile,
// weight_grad_tile, weight_grad_column, weight_grad_tap (the weight gradient's tiles and GEMM
// columns): the geometry of the gradient GEMMs shared
// by conv_gemm.wgsl and conv_coop.wgsl.
// #include "common/conv_params.wgsl"

// The builtins of the gradient GEMM kernels (their entry points' one parameter).
struct GemmIds {
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
}

// The data gradient dx = conv_transpose(dy, w) splits the input pixels into stride x stride
// phases (py, px): the pixels (iy, ix) = (a * stride + py, b * stride + px). Tap r reaches phase
// py exactly when (py + pad - r) is a multiple of the stride, and then oy = a + (py + pad - r) /
// stride, so each phase visits only the taps that reach it. Workgroup z = phase * column_tiles +
// column_tile (column_tiles = q.aux); the GEMM rows of a phase are its N * hp * wp pixels, in
// row tiles of `bm` over workgroups x and y.
struct DataGradPhase {
    py: u32,
    px: u32,
    // Input rows and columns of the phase.
    hp: u32,
    wp: u32,
    // First GEMM row (phase pixel) and column (input channel) of the workgroup's bm x bn tile.
    m0: u32,
    n0: u32,
}

fn data_grad_phase(q: ConvParams, ids: GemmIds, bm: u32, bn: u32) -> DataGradPhase {
    let s = q.stride;
    let z = ids.wid.z;
    let phase = z / q.aux;
    let py = phase / s;
    let px = phase - py * s;
    return DataGradPhase(
        py,
        px,
        select(0u, (q.h - py + s - 1u) / s, py < q.h),
        select(0u, (q.w - px + s - 1u) / s, px < q.w),
        (ids.wid.x + ids.wid.y * ids.nwg.x) * bm,
        (z - phase * q.aux) * bn,
    );
}

// GEMM row m of a phase: whether it exists, and its input pixel (image, a, b) = (image, row
// a * stride + py, column b * stride + px).
struct PhaseRow {
    ok: bool,
    pixel: vec3<u32>,
}

fn phase_row(q: ConvParams, ph: DataGradPhase, m: u32) -> PhaseRow {
    let phase_pixels = max(ph.hp * ph.wp, 1u);
    let img = m / phase_pixels;
    let pix = m - img * phase_pixels;
    let a = pix / max(ph.wp, 1u);
    return PhaseRow(m < q.n * ph.hp * ph.wp, vec3<u32>(img, a, pix - a * max(ph.wp, 1u)));
}

// The first tap row (or column) that reaches phase offset py (or px); the next are `stride`
// apart.
fn first_phase_tap(q: ConvParams, phase_offset: u32) -> u32 {
    return (phase_offset + q.pad) % q.stride;
}

// Tap (r, c) of a phase row: whether it reaches an output pixel (and the row exists), that
// pixel's offset in a dy plane (oy * OW + ox), and the tap's offset in a weight row (r * kw + c).
struct PhaseTap {
    ok: bool,
    dy_offset: u32,
    w_offset: u32,
}

fn phase_tap(q: ConvParams, ph: DataGradPhase, row: PhaseRow, r: u32, c: u32) -> PhaseTap {
    let s = i32(q.stride);
    let oy = i32(row.pixel.y) + (i32(ph.py + q.pad) - i32(r)) / s;
    let ox = i32(row.pixel.z) + (i32(ph.px + q.pad) - i32(c)) / s;
    let ok = row.ok && oy >= 0 && oy < i32(q.oh) && ox >= 0 && ox < i32(q.ow);
    return PhaseTap(ok, u32(oy) * q.ow + u32(ox), r * q.kw + c);
}

// The index in dx [N, Ci, H, W] of channel 0 at a phase row's input pixel.
fn phase_pixel_index(q: ConvParams, ph: DataGradPhase, pixel: vec3<u32>) -> u32 {
    let s = q.stride;
    return pixel.x * q.ci * q.h * q.w + (pixel.y * s + ph.py) * q.w + pixel.z * s + ph.px;
}

// The weight gradient's workgroup tile: rows (output channels) m0 .. m0 + bm over workgroup y,
// columns (weight positions) n0 .. n0 + bn over workgroup x, and its chunk [begin, end) of the
// N*OH*OW reduction (workgroup z; q.aux elements per chunk, q.rows in all).
struct WeightGradTile {
    m0: u32,
    n0: u32,
    begin: u32,
    end: u32,
}

fn weight_grad_tile(q: ConvParams, ids: GemmIds, bm: u32, bn: u32) -> WeightGradTile {
    let begin = ids.wid.z * q.aux;
    return WeightGradTile(ids.wid.y * bm, ids.wid.x * bn, begin, min(begin + q.aux, q.rows));
}

// The weight gradient's GEMM column `col` = (ci, r, c) weight position, as the per-column table
// the kernels stage in workgroup memory: (ci * H * W, r - pad, c - pad, 1 if the column exists).
fn weight_grad_column(q: ConvParams, col: u32) -> vec4<i32> {
    let taps = q.kh * q.kw;
    let ci = col / taps;
    let tap = col - ci * taps;
    let r = tap / q.kw;
    let c = tap - r * q.kw;
    return vec4<i32>(
        i32(ci * q.h * q.w),
        i32(r) - i32(q.pad),
        i32(c) - i32(q.pad),
        select(0, 1, col < q.ci * taps),
    );
}

// Where weight-gradient column `info` (from weight_grad_column) reads x for the output pixel
// whose input window starts at (iy0, ix0) = (oy * stride, ox * stride): the offset in the image's
// x [Ci, H, W], or -1 for a padded tap or a column past the end.
fn weight_grad_tap(q: ConvParams, info: vec4<i32>, iy0: i32, ix0: i32) -> i32 {
    let iy = iy0 + info.y;
    let ix = ix0 + info.z;
    if info.w != 0 && iy >= 0 && iy < i32(q.h) && ix >= 0 && ix < i32(q.w) {
        return info.x + iy * i32(q.w) + ix;
    }
    return -1;
}
