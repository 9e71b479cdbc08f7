// Test-only (tests/coop.rs loads it; it is not embedded in the binary).
// Tensor-core GEMM through cooperative matrices (f16 inputs, f32 accumulation):
// C[M, N] = A[M, K] B[K, N], every matrix row-major and densely packed.
// One subgroup of 32 lanes computes a 32x32 block of C as 2x2 tiles of 16x16; the host checks that
// M and N are multiples of 32 and K a multiple of 16, so every tile is in bounds.
// The override T picks the load/store layout builtins, and nothing else: coopLoadT / coopStoreT
// where it is true, coopLoad / coopStore where false; tests/coop.rs pins which one is row-major.
enable f16;
enable wgpu_cooperative_matrix;

struct Dims {
    m: u32,
    n: u32,
    k: u32,
}
var<immediate> dims: Dims;

@group(0) @binding(0) var<storage, read> a: array<f16>;
@group(0) @binding(1) var<storage, read> b: array<f16>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

override T: bool = true;

@compute @workgroup_size(32)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = wg.y * 32u;
    let col0 = wg.x * 32u;
    let lda = dims.k;
    let ldb = dims.n;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < dims.k; k0 += 16u) {
        let ia0 = row0 * lda + k0;
        let ia1 = (row0 + 16u) * lda + k0;
        let ib0 = k0 * ldb + col0;
        let ib1 = k0 * ldb + col0 + 16u;
        var a0: coop_mat16x16<f16, A>;
        var a1: coop_mat16x16<f16, A>;
        var b0: coop_mat16x16<f16, B>;
        var b1: coop_mat16x16<f16, B>;
        if T {
            a0 = coopLoadT<coop_mat16x16<f16, A>>(&a[ia0], lda);
            a1 = coopLoadT<coop_mat16x16<f16, A>>(&a[ia1], lda);
            b0 = coopLoadT<coop_mat16x16<f16, B>>(&b[ib0], ldb);
            b1 = coopLoadT<coop_mat16x16<f16, B>>(&b[ib1], ldb);
        } else {
            a0 = coopLoad<coop_mat16x16<f16, A>>(&a[ia0], lda);
            a1 = coopLoad<coop_mat16x16<f16, A>>(&a[ia1], lda);
            b0 = coopLoad<coop_mat16x16<f16, B>>(&b[ib0], ldb);
            b1 = coopLoad<coop_mat16x16<f16, B>>(&b[ib1], ldb);
        }
        c00 = coopMultiplyAdd(a0, b0, c00);
        c01 = coopMultiplyAdd(a0, b1, c01);
        c10 = coopMultiplyAdd(a1, b0, c10);
        c11 = coopMultiplyAdd(a1, b1, c11);
    }
    let ldc = dims.n;
    let i00 = row0 * ldc + col0;
    let i01 = row0 * ldc + col0 + 16u;
    let i10 = (row0 + 16u) * ldc + col0;
    let i11 = (row0 + 16u) * ldc + col0 + 16u;
    if T {
        coopStoreT(c00, &c[i00], ldc);
        coopStoreT(c01, &c[i01], ldc);
        coopStoreT(c10, &c[i10], ldc);
        coopStoreT(c11, &c[i11], ldc);
    } else {
        coopStore(c00, &c[i00], ldc);
        coopStore(c01, &c[i01], ldc);
        coopStore(c10, &c[i10], ldc);
        coopStore(c11, &c[i11], ldc);
    }
}
