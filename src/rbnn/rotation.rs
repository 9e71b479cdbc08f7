//! The bi-rotation update of R1 and R2 (docs/numerics.md section 5) for all binary layers of a
//! model at once, and the per-layer diagnostics of the rotation.
//!
//! Each of the 3 alternating iterations is two round trips: the GPU computes, for every layer in
//! one submit, B_o = sign(R1^T X_o R2) and D1 = sum_o B_o R2^T X_o^T (shaders/rotation.wgsl:
//! one dispatch per product per layer, all output channels at once); the host reads every D1
//! back, takes the SVDs (nalgebra, layers in parallel) and writes R1 = V1 U1^T; then the same for
//! D2 = sum_o X_o^T R1 B_o and R2 = U2 V2^T. A last submit measures the result.
//!
//! The objective sum_o tr(B_o^T R1^T X_o R2) = sum_o |R1^T X_o R2| (elementwise) comes for free
//! from D1: it equals sum_ij R1[j,i] D1[i,j], computed on the host in f64.

use super::layer::BinaryConv2d;
use super::procrustes::{channel_cosine, rotation_from_d1, rotation_from_d2};
use super::rotate::{self, WeightDims};
use super::standardize;
use crate::gpu::{Dispatch, Gpu, Imm, Tensor};
use crate::ops::shape::expect_len;
use crate::rng::Rng;
use anyhow::{anyhow, Context, Result};
use nalgebra::DMatrix;
use std::time::Instant;

/// Alternating iterations per update, as the official code.
pub const ITERATIONS: usize = 3;

/// What one layer's rotation looks like, measured on the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerDiagnostics {
    /// Share of the weights with sign(w3) != sign(w2) (the rotation's flips).
    pub flip_rate: f64,
    /// Mean over output channels of cos(w3_o, sign(w3_o)) (the angular bias left).
    pub mean_cosine: f64,
    /// sum_o tr(B_o^T R1^T X_o R2): before the update and after each iteration (one value, the
    /// current one, from `measure`).
    pub objectives: Vec<f64>,
}

impl LayerDiagnostics {
    pub fn objective_before(&self) -> f64 {
        self.objectives[0]
    }
    pub fn objective_after(&self) -> f64 {
        self.objectives[self.objectives.len() - 1]
    }
}

/// A random orthogonal n x n matrix from the Haar distribution (as scipy's ortho_group), row-major:
/// the QR decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q.
pub fn random_orthogonal(rng: &mut Rng, n: usize) -> Vec<f32> {
    let g = DMatrix::from_fn(n, n, |_, _| rng.normal());
    let qr = g.qr();
    let (mut q, r) = (qr.q(), qr.r());
    for j in 0..n {
        if r[(j, j)] < 0.0 {
            q.column_mut(j).neg_mut();
        }
    }
    q.transpose().iter().map(|&v| v as f32).collect()
}

/// A product of shaders/rotation.wgsl: dimensions and the strides of its three operands.
struct Product {
    m: usize,
    n: usize,
    k: usize,
    batch: usize,
    /// (o, i, k) strides of the left operand.
    a: [usize; 3],
    /// bgemm: (o, k, j) strides of the right operand; bsum: (o, k, j) strides of B_o[j, k].
    b: [usize; 3],
    /// (o, i, j) strides of the output.
    c: [usize; 3],
    sign: bool,
}

impl Product {
    fn immediates(&self) -> Imm {
        let [a_so, a_si, a_sk] = self.a;
        let [b_so, b_sk, b_sj] = self.b;
        let [c_so, c_si, c_sj] = self.c;
        [
            self.m,
            self.n,
            self.k,
            self.batch,
            a_so,
            a_si,
            a_sk,
            b_so,
            b_sk,
            b_sj,
            c_so,
            c_si,
            c_sj,
            self.sign as usize,
        ]
        .iter()
        .fold(Imm::new(), |imm, &v| imm.u(v as u32))
    }

    /// C_o = A_o B_o (optionally sign of it) for every o.
    fn bgemm(&self, gpu: &Gpu, lhs: &Tensor, rhs: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let k = gpu.kernel("rotation", "bgemm", &[])?;
        gpu.dispatch(
            &k,
            &[lhs, rhs, out],
            self.immediates().bytes(),
            [
                self.n.div_ceil(32) as u32,
                self.m.div_ceil(32) as u32,
                self.batch as u32,
            ],
        )
    }

    /// D = sum_o A_o B_o^T.
    fn bsum(&self, gpu: &Gpu, lhs: &Tensor, rhs: &Tensor, out: &Tensor) -> Result<Dispatch> {
        let k = gpu.kernel("rotation", "bsum", &[])?;
        gpu.dispatch(
            &k,
            &[lhs, rhs, out],
            self.immediates().bytes(),
            [self.n.div_ceil(4) as u32, self.m.div_ceil(4) as u32, 1],
        )
    }
}

/// One layer's part of the update: its tensors, scratch and dispatches, and where its results
/// land in the shared readback buffer (offsets in f32 elements).
struct LayerUpdate {
    dims: WeightDims,
    r1: Tensor,
    r2: Tensor,
    d1: Tensor,
    d2: Tensor,
    diag: Tensor,
    /// w2 and wstats from the current weight.
    prepare: Dispatch,
    /// Y = X R2, B = sign(R1^T Y), D1 = sum B Y^T.
    products_d1: Vec<Dispatch>,
    /// Z = R1 B, D2 = sum X^T Z.
    products_d2: Vec<Dispatch>,
    /// w3 from the current R1, R2, then the per-channel diagnostics.
    measure: Vec<Dispatch>,
    at_d: usize,
    at_r1: usize,
    at_diag: usize,
}

impl LayerUpdate {
    fn new(gpu: &Gpu, layer: &BinaryConv2d, staging_at: usize) -> Result<LayerUpdate> {
        let d = layer.dims;
        let t = &layer.tensors;
        let name = &t.weight.label;
        let (a, b, co, n) = (d.a, d.b, d.co, d.n());
        for (what, dim) in [("a", a), ("b", b), ("Co", co)] {
            if dim as u32 > gpu.limits.max_compute_workgroups_per_dimension {
                return Err(anyhow!("rotation update of {name}: {what} = {dim} exceeds the adapter's workgroups per dimension"));
            }
        }
        // The update computes w2, rw, w3 into the layer's own weight-side scratch, which the
        // next forward rewrites: so it must run between steps, never between a forward and its
        // backward.
        let scratch = &layer.scratch;
        let yz = gpu.try_tensor(&format!("{name}.rotation.yz"), &[co, a, b])?;
        let bsign = gpu.try_tensor(&format!("{name}.rotation.b"), &[co, a, b])?;
        let d1 = gpu.try_tensor(&format!("{name}.rotation.d1"), &[a, a])?;
        let d2 = gpu.try_tensor(&format!("{name}.rotation.d2"), &[b, b])?;
        let diag = gpu.try_tensor(&format!("{name}.rotation.diag"), &[co, 4])?;
        let variant = gpu.kernel_variant()?;
        let prepare =
            standardize::weight_forward(gpu, variant, d, &t.weight, &t.alpha, &t.rotate, scratch)?;
        let x = &scratch.w2;
        let y = Product {
            m: a,
            n: b,
            k: b,
            batch: co,
            a: [n, b, 1],
            b: [0, b, 1],
            c: [n, b, 1],
            sign: false,
        };
        let signs = Product {
            m: a,
            n: b,
            k: a,
            batch: co,
            a: [0, 1, a],
            b: [n, b, 1],
            c: [n, b, 1],
            sign: true,
        };
        let sum_d1 = Product {
            m: a,
            n: a,
            k: b,
            batch: co,
            a: [n, b, 1],
            b: [n, 1, b],
            c: [0, a, 1],
            sign: false,
        };
        let z = Product {
            m: a,
            n: b,
            k: a,
            batch: co,
            a: [0, a, 1],
            b: [n, b, 1],
            c: [n, b, 1],
            sign: false,
        };
        let sum_d2 = Product {
            m: b,
            n: b,
            k: a,
            batch: co,
            a: [n, 1, b],
            b: [n, b, 1],
            c: [0, b, 1],
            sign: false,
        };
        let products_d1 = vec![
            y.bgemm(gpu, x, &t.r2, &yz)?,
            signs.bgemm(gpu, &t.r1, &yz, &bsign)?,
            sum_d1.bsum(gpu, &bsign, &yz, &d1)?,
        ];
        let products_d2 = vec![
            z.bgemm(gpu, &t.r1, &bsign, &yz)?,
            sum_d2.bsum(gpu, x, &yz, &d2)?,
        ];
        let mut measure = rotate::rotate_forward(gpu, variant, d, &t.r1, &t.r2, scratch)?;
        measure.push(rotate::diagnostics(gpu, d, scratch, &diag)?);
        let at_d = staging_at;
        let at_r1 = at_d + a.max(b).pow(2);
        let at_diag = at_r1 + a * a;
        Ok(LayerUpdate {
            dims: d,
            r1: t.r1.clone(),
            r2: t.r2.clone(),
            d1,
            d2,
            diag,
            prepare,
            products_d1,
            products_d2,
            measure,
            at_d,
            at_r1,
            at_diag,
        })
    }

    fn staging_end(&self) -> usize {
        self.at_diag + self.dims.co * 4
    }

    /// sum_ij R1[j,i] D1[i,j] from the readback.
    fn objective(&self, data: &[f32]) -> f64 {
        let a = self.dims.a;
        let (d1, r1) = (&data[self.at_d..], &data[self.at_r1..]);
        (0..a)
            .flat_map(|i| (0..a).map(move |j| (i, j)))
            .map(|(i, j)| r1[j * a + i] as f64 * d1[i * a + j] as f64)
            .sum()
    }

    fn diagnostics(&self, data: &[f32], objectives: Vec<f64>) -> LayerDiagnostics {
        let d = self.dims;
        let diag = &data[self.at_diag..self.at_diag + d.co * 4];
        let flips: f64 = diag.chunks(4).map(|c| c[0] as f64).sum();
        let cos: f64 = diag
            .chunks(4)
            .map(|c| channel_cosine(c[1] as f64, (c[2] as f64).sqrt(), c[3] as f64))
            .sum();
        LayerDiagnostics {
            flip_rate: flips / d.len() as f64,
            mean_cosine: cos / d.co as f64,
            objectives,
        }
    }
}

/// Where a rotation update's wall-clock time went.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RotationTiming {
    /// The submits: the batched products on the GPU, the readbacks and the waits.
    pub gpu_seconds: f64,
    /// The SVDs (in parallel over the layers) and the uploads of R1, R2.
    pub host_seconds: f64,
}

/// A one-off update of `layers`: builds a `RotationUpdate` (scratch, dispatches, readback buffer)
/// and runs it. A trainer that updates every epoch builds the `RotationUpdate` once instead.
pub fn rotation_update(gpu: &Gpu, layers: &[&BinaryConv2d]) -> Result<Vec<LayerDiagnostics>> {
    RotationUpdate::new(gpu, layers)?.update(gpu)
}

/// The rotation update of a set of layers (a model's binary convs), built once: scratch,
/// dispatches and the readback buffer. `update` runs it; the trainer calls it before the forward
/// of the first batch of every rotation epoch.
pub struct RotationUpdate {
    layers: Vec<LayerUpdate>,
    staging: wgpu::Buffer,
}

impl RotationUpdate {
    pub fn new(gpu: &Gpu, layers: &[&BinaryConv2d]) -> Result<RotationUpdate> {
        let mut updates = Vec::with_capacity(layers.len());
        let mut at = 0;
        for layer in layers {
            let u = LayerUpdate::new(gpu, layer, at)
                .with_context(|| format!("rotation update of {}", layer.tensors.weight.label))?;
            at = u.staging_end();
            updates.push(u);
        }
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("rotation readback"),
            size: (at.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(RotationUpdate {
            layers: updates,
            staging,
        })
    }

    /// The 3 alternating iterations for every layer (R1 and R2 rewritten in place), then the
    /// diagnostics of the result. Blocks until done; the next submit sees the new R1, R2.
    pub fn update(&self, gpu: &Gpu) -> Result<Vec<LayerDiagnostics>> {
        Ok(self.update_timed(gpu)?.0)
    }

    /// `update`, also saying where its time went.
    pub fn update_timed(&self, gpu: &Gpu) -> Result<(Vec<LayerDiagnostics>, RotationTiming)> {
        let mut timing = RotationTiming::default();
        let mut objectives = vec![Vec::with_capacity(ITERATIONS + 1); self.layers.len()];
        for it in 0..ITERATIONS {
            let started = Instant::now();
            let data = self.submit(
                gpu,
                |l, pass| {
                    if it == 0 {
                        l.prepare.record(pass);
                    }
                    l.products_d1.iter().for_each(|d| d.record(pass));
                },
                |l| vec![(&l.d1, l.at_d), (&l.r1, l.at_r1)],
            )?;
            timing.gpu_seconds += started.elapsed().as_secs_f64();
            let started = Instant::now();
            for (l, obj) in self.layers.iter().zip(&mut objectives) {
                obj.push(l.objective(&data));
            }
            let r1s = self.solve(&data, |l| (&l.d1, l.dims.a), rotation_from_d1)?;
            for (l, r1) in self.layers.iter().zip(&r1s) {
                gpu.write(&l.r1, r1);
            }
            timing.host_seconds += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let data = self.submit(
                gpu,
                |l, pass| l.products_d2.iter().for_each(|d| d.record(pass)),
                |l| vec![(&l.d2, l.at_d)],
            )?;
            timing.gpu_seconds += started.elapsed().as_secs_f64();
            let started = Instant::now();
            let r2s = self.solve(&data, |l| (&l.d2, l.dims.b), rotation_from_d2)?;
            for (l, r2) in self.layers.iter().zip(&r2s) {
                gpu.write(&l.r2, r2);
            }
            timing.host_seconds += started.elapsed().as_secs_f64();
        }
        let started = Instant::now();
        let (data, _) = self.measure_submit(gpu, false)?;
        timing.gpu_seconds += started.elapsed().as_secs_f64();
        let diagnostics = self
            .layers
            .iter()
            .zip(objectives)
            .map(|(l, mut obj)| {
                obj.push(l.objective(&data));
                l.diagnostics(&data, obj)
            })
            .collect();
        Ok((diagnostics, timing))
    }

    /// The diagnostics of the current weights and rotations, changing nothing.
    pub fn measure(&self, gpu: &Gpu) -> Result<Vec<LayerDiagnostics>> {
        let (data, objectives) = self.measure_submit(gpu, true)?;
        Ok(self
            .layers
            .iter()
            .zip(objectives)
            .map(|(l, obj)| l.diagnostics(&data, vec![obj]))
            .collect())
    }

    fn measure_submit(&self, gpu: &Gpu, prepare: bool) -> Result<(Vec<f32>, Vec<f64>)> {
        let data = self.submit(
            gpu,
            |l, pass| {
                if prepare {
                    l.prepare.record(pass);
                }
                l.products_d1.iter().for_each(|d| d.record(pass));
                l.measure.iter().for_each(|d| d.record(pass));
            },
            |l| vec![(&l.d1, l.at_d), (&l.r1, l.at_r1), (&l.diag, l.at_diag)],
        )?;
        let objectives = self.layers.iter().map(|l| l.objective(&data)).collect();
        Ok((data, objectives))
    }

    /// Records every layer's dispatches into one pass, copies the named tensors to their places
    /// in the readback buffer, submits, waits and returns the readback.
    fn submit<'a>(
        &'a self,
        gpu: &Gpu,
        record: impl Fn(&LayerUpdate, &mut wgpu::ComputePass<'_>),
        copies: impl Fn(&'a LayerUpdate) -> Vec<(&'a Tensor, usize)>,
    ) -> Result<Vec<f32>> {
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("rotation update"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("rotation update"),
                timestamp_writes: None,
            });
            for l in &self.layers {
                record(l, &mut pass);
            }
        }
        for l in &self.layers {
            for (t, at) in copies(l) {
                encoder.copy_buffer_to_buffer(
                    &t.buffer,
                    t.offset,
                    &self.staging,
                    (at * 4) as u64,
                    t.bytes(),
                );
            }
        }
        gpu.queue.submit([encoder.finish()]);
        let slice = self.staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        rx.recv()
            .map_err(|_| anyhow!("rotation readback: map callback lost"))?
            .map_err(|e| anyhow!("rotation readback: {e}"))?;
        let data = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("rotation readback: {e}"))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        // The view must be dropped before unmap.
        self.staging.unmap();
        Ok(data)
    }

    /// For every layer, its d x d matrix from the readback through `from_product`, on all cores;
    /// the results row-major as f32.
    fn solve(
        &self,
        data: &[f32],
        pick: impl Fn(&LayerUpdate) -> (&Tensor, usize) + Sync,
        from_product: fn(&DMatrix<f64>) -> Result<DMatrix<f64>>,
    ) -> Result<Vec<Vec<f32>>> {
        let one = |l: &LayerUpdate| -> Result<Vec<f32>> {
            let (t, dim) = pick(l);
            expect_len(t, dim * dim, "rotation product")?;
            let d = DMatrix::from_row_slice(
                dim,
                dim,
                &data[l.at_d..l.at_d + dim * dim]
                    .iter()
                    .map(|&v| v as f64)
                    .collect::<Vec<_>>(),
            );
            let r = from_product(&d).with_context(|| format!("layer {}", t.label))?;
            Ok(r.transpose().iter().map(|&v| v as f32).collect())
        };
        // One thread per layer: the SVDs of a model's largest layers dominate, and a thread
        // each spreads them over the cores best.
        std::thread::scope(|scope| {
            let handles: Vec<_> = self.layers.iter().map(|l| scope.spawn(|| one(l))).collect();
            let mut out = Vec::with_capacity(self.layers.len());
            for h in handles {
                out.push(
                    h.join()
                        .map_err(|_| anyhow!("rotation update: an SVD thread panicked"))??,
                );
            }
            Ok(out)
        })
    }
}

/// The rotation update and its diagnostics in f64 (docs/numerics.md section 5).
pub mod cpu {
    use crate::rbnn::procrustes::{
        channel_cosine, mat, rotation_from_d1, rotation_from_d2, row_major,
    };
    use crate::rbnn::rotate::cpu::rotate;
    use crate::rbnn::schedule::cpu::sign;
    use nalgebra::DMatrix;

    /// sum_o tr(B_o^T R1^T X_o R2) with B_o = sign(R1^T X_o R2), i.e. sum |R1^T X_o R2|.
    pub fn rotation_objective(w2: &[f64], r1: &[f64], r2: &[f64], a: usize, b: usize) -> f64 {
        rotate(w2, r1, r2, a, b).iter().map(|v| v.abs()).sum()
    }

    /// R1, R2 after the update and the objective before it and after each iteration.
    pub struct Rotation {
        pub r1: Vec<f64>,
        pub r2: Vec<f64>,
        pub objectives: Vec<f64>,
    }

    /// The bi-rotation update (docs/numerics.md section 5): `iterations` alternating steps of
    /// B_o = sign(R1^T X_o R2); R1 <- V1 U1^T from svd(sum_o B_o R2^T X_o^T);
    /// R2 <- U2 V2^T from svd(sum_o X_o^T R1 B_o).
    pub fn rotation_update(
        w2: &[f64],
        r1: &[f64],
        r2: &[f64],
        a: usize,
        b: usize,
        iterations: usize,
    ) -> anyhow::Result<Rotation> {
        let xs: Vec<DMatrix<f64>> = w2.chunks(a * b).map(|x| mat(x, a, b)).collect();
        let (mut r1m, mut r2m) = (mat(r1, a, a), mat(r2, b, b));
        let mut objectives = Vec::with_capacity(iterations + 1);
        for _ in 0..iterations {
            let bs: Vec<DMatrix<f64>> = xs
                .iter()
                .map(|x| (r1m.transpose() * x * &r2m).map(sign))
                .collect();
            objectives.push(rotation_objective(
                w2,
                &row_major(&r1m),
                &row_major(&r2m),
                a,
                b,
            ));
            let mut d1 = DMatrix::zeros(a, a);
            for (bo, x) in bs.iter().zip(&xs) {
                d1 += bo * r2m.transpose() * x.transpose();
            }
            r1m = rotation_from_d1(&d1)?;
            let mut d2 = DMatrix::zeros(b, b);
            for (bo, x) in bs.iter().zip(&xs) {
                d2 += x.transpose() * &r1m * bo;
            }
            r2m = rotation_from_d2(&d2)?;
        }
        let (r1, r2) = (row_major(&r1m), row_major(&r2m));
        objectives.push(rotation_objective(w2, &r1, &r2, a, b));
        Ok(Rotation { r1, r2, objectives })
    }

    /// (flip rate, mean over output channels of cos(w3_o, sign(w3_o))): the share of weights whose
    /// sign the rotation changed, and how well the binary code approximates w3's direction.
    pub fn diagnostics(w2: &[f64], w3: &[f64], n: usize) -> (f64, f64) {
        let flips = w2
            .iter()
            .zip(w3)
            .filter(|(a, b)| sign(**a) != sign(**b))
            .count();
        let cos: f64 = w3
            .chunks(n)
            .map(|row| {
                let l1: f64 = row.iter().map(|v| v.abs()).sum();
                let l2: f64 = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                let nnz = row.iter().filter(|v| **v != 0.0).count() as f64;
                channel_cosine(l1, l2, nnz)
            })
            .sum();
        let rows = (w3.len() / n).max(1) as f64;
        (flips as f64 / w3.len().max(1) as f64, cos / rows)
    }
}
