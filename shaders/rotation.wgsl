// The batched products of the bi-rotation update (docs/numerics.md section 5). With X_o the a x b
// view of w2's row o, B_o = sign(R1^T X_o R2), src/rbnn/rotation.rs runs per layer:
//   Y_o = X_o R2                         bgemm
//   B_o = sign(R1^T Y_o)                 bgemm (sign)
//   D1  = sum_o B_o Y_o^T  (a x a)       bsum     -> SVD on the host -> R1
//   Z_o = R1 B_o                         bgemm
//   D2  = sum_o X_o^T Z_o  (b x b)       bsum     -> SVD on the host -> R2
// Every operand is addressed through strides (immediates), so one kernel serves every product.
//
// bgemm: C_o[i, j] = sum_k A_o[i, k] * B_o[k, j] for every o (workgroup z), 32 x 32 output tiles,
//   16-deep slices of both operands staged in workgroup memory, 2 x 2 outputs per invocation.
//   Element (o, i, k) of A is at o*a_so + i*a_si + k*a_sk (a zero o-stride shares one matrix
//   between all o); B's (o, k, j) at o*b_so + k*b_sk + j*b_sj; C's (o, i, j) at
//   o*c_so + i*c_si + j*c_sj. With flag = 1 it stores sign(C) (torch.sign: sign(0) = 0).
// bsum: D[i, j] = sum_o sum_k A_o[i, k] * B_o[j, k] (B's (o, j, k) at o*b_so + j*b_sj + k*b_sk),
//   a long reduction into a small matrix: one workgroup per 4 x 4 block of D, whose 256
//   invocations split the (o, k) pairs and meet in a fixed tree (same bits every run).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_so: u32,
    a_si: u32,
    a_sk: u32,
    b_so: u32,
    b_sk: u32,
    b_sj: u32,
    c_so: u32,
    c_si: u32,
    c_sj: u32,
    flag: u32,
}
var<immediate> p: Params;

@group(0) @binding(0) var<storage, read> lhs: array<f32>;
@group(0) @binding(1) var<storage, read> rhs: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const T: u32 = 32u;
const TK: u32 = 16u;
var<workgroup> As: array<f32, 512>;
var<workgroup> Bs: array<f32, 512>;

@compute @workgroup_size(256)
fn bgemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let tx = tid % 16u;
    let ty = tid / 16u;
    let o = wid.z;
    let i0 = wid.y * T;
    let j0 = wid.x * T;
    let a_base = o * p.a_so;
    let b_base = o * p.b_so;
    var acc = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        // Each tile has T * TK = 512 elements: two per invocation.
        for (var e = tid; e < T * TK; e += 256u) {
            let r = e % T;
            let kk = e / T;
            let i = i0 + r;
            let j = j0 + r;
            let k = k0 + kk;
            var av = 0.0;
            var bv = 0.0;
            if i < p.m && k < p.k {
                av = lhs[a_base + i * p.a_si + k * p.a_sk];
            }
            if j < p.n && k < p.k {
                bv = rhs[b_base + k * p.b_sk + j * p.b_sj];
            }
            As[kk * T + r] = av;
            Bs[kk * T + r] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a0 = As[kk * T + tx];
            let a1 = As[kk * T + tx + 16u];
            let b0 = Bs[kk * T + ty];
            let b1 = Bs[kk * T + ty + 16u];
            acc += vec4<f32>(a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        }
        workgroupBarrier();
    }
    for (var q = 0u; q < 4u; q++) {
        let i = i0 + tx + (q / 2u) * 16u;
        let j = j0 + ty + (q % 2u) * 16u;
        if i < p.m && j < p.n {
            let v = acc[q];
            out[o * p.c_so + i * p.c_si + j * p.c_sj] = select(v, sign(v), p.flag == 1u);
        }
    }
}

var<workgroup> red: array<mat4x4<f32>, 256>;

@compute @workgroup_size(256)
fn bsum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = lid.x;
    let i0 = wid.y * 4u;
    let j0 = wid.x * 4u;
    // acc[c][r] = partial D[i0 + r, j0 + c]
    var acc = mat4x4<f32>();
    let total = p.batch * p.k;
    for (var q = tid; q < total; q += 256u) {
        let o = q / p.k;
        let k = q - o * p.k;
        var av = vec4<f32>(0.0);
        var bv = vec4<f32>(0.0);
        for (var r = 0u; r < 4u; r++) {
            let i = i0 + r;
            let j = j0 + r;
            if i < p.m {
                av[r] = lhs[o * p.a_so + i * p.a_si + k * p.a_sk];
            }
            if j < p.n {
                bv[r] = rhs[o * p.b_so + j * p.b_sj + k * p.b_sk];
            }
        }
        acc[0] += av * bv.x;
        acc[1] += av * bv.y;
        acc[2] += av * bv.z;
        acc[3] += av * bv.w;
    }
    red[tid] = acc;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if tid < s {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    if tid < 16u {
        let r = tid % 4u;
        let c = tid / 4u;
        let i = i0 + r;
        let j = j0 + c;
        if i < p.m && j < p.n {
            out[i * p.c_si + j * p.c_sj] = red[0][c][r];
        }
    }
}
