//! IEEE half precision on the host: the conversions the CPU references of the tensor-core
//! (cooperative matrix) kernels use, rounding like the GPU's f32 -> f16 conversion (to nearest,
//! ties to even; overflow to infinity; subnormals kept).

/// The f16 bit pattern nearest to `x`.
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x007f_ffff;
    if exp == 0xff {
        // Inf stays inf; NaN stays a (quiet) NaN.
        return sign | 0x7c00 | if man != 0 { 0x0200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // Subnormal (or zero): shift the mantissa with its implicit bit into place.
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut out = m >> shift;
        if rest > half || (rest == half && out & 1 == 1) {
            out += 1;
        }
        return sign | out as u16;
    }
    let mut out = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && out & 1 == 1) {
        out += 1; // may carry into the exponent, up to infinity: correct rounding
    }
    sign | out as u16
}

/// The value of an f16 bit pattern.
pub fn f16_value(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        0x1f if man == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        _ => sign * (1.0 + man / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// `x` rounded to f16 and back.
pub fn round_f16(x: f32) -> f32 {
    f16_value(f16_bits(x))
}

/// f16 values packed two per u32 (element 2i in the low half), the layout of a WGSL
/// `array<f16>` in a storage buffer; an odd count is padded with zero.
pub fn pack_f16(values: &[f32]) -> Vec<u32> {
    values
        .chunks(2)
        .map(|p| f16_bits(p[0]) as u32 | (p.get(1).map_or(0, |&v| f16_bits(v)) as u32) << 16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_values_round_trip() {
        for v in [
            0.0f32,
            1.0,
            -1.0,
            0.5,
            65504.0,
            -2.0f32.powi(-24),
            2.0f32.powi(-14),
            3.140625,
        ] {
            assert_eq!(round_f16(v), v, "{v}");
        }
    }

    #[test]
    fn rounds_to_nearest_even() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1).
        assert_eq!(round_f16(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(
            round_f16(1.0 + 3.0 * 2f32.powi(-11)),
            1.0 + 2.0 * 2f32.powi(-10)
        );
        assert_eq!(round_f16(65520.0), f32::INFINITY);
        assert_eq!(round_f16(65519.0), 65504.0);
        assert_eq!(round_f16(2f32.powi(-26)), 0.0);
        assert_eq!(round_f16(3.0 * 2f32.powi(-26)), 2f32.powi(-24));
        assert!(round_f16(f32::NAN).is_nan());
    }

    #[test]
    fn relative_error_is_bounded() {
        let mut x = 1e-4f32;
        while x < 6e4 {
            let r = round_f16(x);
            assert!(((r - x) / x).abs() <= 2f32.powi(-11), "{x} -> {r}");
            x *= 1.0123;
        }
    }
}
