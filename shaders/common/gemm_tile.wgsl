// defines: BM, BN, BK, TX, TY, WG, A_SIZE, B_SIZE: the tile shape of the workgroup-tiled GEMMs
// (conv_gemm.wgsl; binconv.wgsl and infer_binconv.wgsl through common/binary_tile.wgsl), set per
// layer through override constants by the host.
//
// Each workgroup computes a BM x BN output tile, walking the reduction in slices of BK staged in
// workgroup memory (A: BK x BM, B: BK x BN); each invocation keeps a 4x4 register micro-tile, so
// a workgroup has (BM / 4) * (BN / 4) invocations. The host checks BM and BN are multiples of 16
// (every invocation then stages a fixed row or column).

override BM: u32 = 64u;
override BN: u32 = 64u;
override BK: u32 = 16u;
// Invocations along the tile's rows and columns, and in the whole workgroup.
override TX: u32 = BM / 4u;
override TY: u32 = BN / 4u;
override WG: u32 = TX * TY;
// Elements of one staged slice of each operand.
override A_SIZE: u32 = BK * BM;
override B_SIZE: u32 = BK * BN;
