// defines: DKH, DKW, DS, DTRANSPOSED, DPMOD, DKK, DCOLS, floor_div, window_origin, window_len,
// window_index, GatherDims, gather_dims: the tap geometry of the direct convolutions (conv_direct.wgsl and its vec4
// variants conv_direct4.wgsl, conv_weight4.wgsl), compiled in as override constants so that
// every loop over taps and tile positions unrolls. Uses the includer's immediates `p`
// (ConvParams).
//
// A gather tile is 8x8 output pixels from (t0, t0) on; the input window it reads starts at
// window_origin and is window_len rows (or columns) long; window_index says which window row
// feeds tile row t through tap r.

override DKH: u32 = 3u;
override DKW: u32 = 3u;
override DS: u32 = 1u;
override DTRANSPOSED: bool = false;
// The padding modulo the stride, for DTRANSPOSED: with it, which taps reach which outputs is known
// at compile time (the rest of the padding only moves the window, a runtime offset).
override DPMOD: i32 = 0;
override DKK: u32 = DKH * DKW;
override DCOLS: u32 = 7u * DS + DKW;

// floor(a / b) for a > -64 b.
fn floor_div(a: i32, b: i32) -> i32 {
    return (a + 64 * b) / b - 64;
}

// First input row (or column) of the window that a tile starting at output row t0 reads.
fn window_origin(t0: u32, k: u32) -> i32 {
    if DTRANSPOSED {
        return i32(t0 / DS) + i32(p.pad / DS) + floor_div(DPMOD + 1 - i32(k), i32(DS));
    }
    return i32(t0 * DS) - i32(p.pad);
}

// Rows (or columns) of that window.
fn window_len(k: u32) -> u32 {
    if DTRANSPOSED {
        return u32(floor_div(7 + DPMOD, i32(DS)) - floor_div(DPMOD + 1 - i32(k), i32(DS)) + 1);
    }
    return 7u * DS + k;
}

// Where output row t (0..8) of a tile meets tap r in the window, or -1 where it does not (a
// transposed conv with stride > 1 reaches each output from only some taps).
fn window_index(t: u32, r: u32, k: u32) -> i32 {
    if DTRANSPOSED {
        let num = i32(t) + DPMOD - i32(r);
        if num % i32(DS) != 0 {
            return -1;
        }
        return floor_div(num, i32(DS)) - floor_div(DPMOD + 1 - i32(k), i32(DS));
    }
    return i32(t * DS + r);
}

// The shapes a gather kernel reads and writes: x -> y, or (DTRANSPOSED) dy -> dx.
struct GatherDims {
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
}

fn gather_dims() -> GatherDims {
    if DTRANSPOSED {
        return GatherDims(p.co, p.oh, p.ow, p.ci, p.h, p.w);
    }
    return GatherDims(p.ci, p.h, p.w, p.co, p.oh, p.ow);
}
