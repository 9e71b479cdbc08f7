// defines: sign_bits, words_per_tap: the packing of ternary signs shared by binconv.wgsl (training)
// and infer_ops.wgsl (the packed engine).
//
// Values are ternary, as torch.sign: -1, 0 or +1. Each group of 32 channels is packed into a pair
// of u32 words (channel c -> bit c % 32 of word c / 32):
//   .x sign plane:    bit set where the value is negative
//   .y nonzero plane: bit set where the value is not 0
// so an exact zero, a channel past the last one in the last word, and a padded tap (a pair
// (0, 0)) all contribute exactly 0 to a dot product (common/binary_tile.wgsl).

// (sign bit, nonzero bit) of v at bit position j; sign(0) = 0 as torch.sign.
fn sign_bits(v: f32, j: u32) -> vec2<u32> {
    return vec2<u32>(select(0u, 1u << j, v < 0.0), select(0u, 1u << j, v != 0.0));
}

// Word pairs per pixel (or tap) of c channels: ceil(c / 32).
fn words_per_tap(c: u32) -> u32 {
    return (c + 31u) / 32u;
}
