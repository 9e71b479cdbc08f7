//! The host maths of the rotation update, in f64 on nalgebra matrices: the orthogonal Procrustes
//! steps that turn D1 and D2 into R1 and R2 (through SVDs), the cosine between a weight channel
//! and its binary code, and row-major slices as matrices. The GPU update (`rotation`) and its
//! f64 reference (`rotation::cpu`) both use them.

use anyhow::{anyhow, Result};
use nalgebra::DMatrix;

/// R1 = V1 U1^T from D1 = U1 S1 V1^T: the orthogonal R maximising tr(R^T D1^T).
pub fn rotation_from_d1(d1: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    let (u, v_t) = svd(d1)?;
    Ok((u * v_t).transpose())
}

/// R2 = U2 V2^T from D2 = U2 S2 V2^T: the orthogonal R maximising tr(R^T D2).
pub fn rotation_from_d2(d2: &DMatrix<f64>) -> Result<DMatrix<f64>> {
    let (u, v_t) = svd(d2)?;
    Ok(u * v_t)
}

fn svd(d: &DMatrix<f64>) -> Result<(DMatrix<f64>, DMatrix<f64>)> {
    if d.iter().any(|v| !v.is_finite()) {
        return Err(anyhow!(
            "rotation update: the {}x{} product matrix holds non-finite values (weights with \
             NaN/inf, or a constant output channel whose std is 0)",
            d.nrows(),
            d.ncols()
        ));
    }
    let svd = d
        .clone()
        .try_svd(true, true, f64::EPSILON, 10_000)
        .ok_or_else(|| {
            anyhow!(
                "rotation update: SVD of a {}x{} matrix did not converge",
                d.nrows(),
                d.ncols()
            )
        })?;
    match (svd.u, svd.v_t) {
        (Some(u), Some(v_t)) => Ok((u, v_t)),
        _ => Err(anyhow!("rotation update: SVD returned no singular vectors")),
    }
}

/// cos(w, sign(w)) = sum|w| / (||w|| * sqrt(#nonzero)) of one output channel, from its l1 norm,
/// l2 norm and number of nonzero weights; 0 for an all-zero channel.
pub fn channel_cosine(l1: f64, l2: f64, nonzero: f64) -> f64 {
    if l2 > 0.0 && nonzero > 0.0 {
        l1 / (l2 * nonzero.sqrt())
    } else {
        0.0
    }
}

/// A row-major `rows` x `cols` slice as a matrix.
pub fn mat(data: &[f64], rows: usize, cols: usize) -> DMatrix<f64> {
    DMatrix::from_row_slice(rows, cols, data)
}

/// A matrix back to a row-major vector.
pub fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}
