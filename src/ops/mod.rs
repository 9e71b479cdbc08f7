//! One file per kernel family: the host wrapper (dispatch math, bind groups) and a plain-Rust CPU
//! reference (f64 accumulation) of the forward and the backward.
pub mod batchnorm;
pub mod channel_dot;
pub mod conv;
pub mod conv_coop;
pub mod elementwise;
pub mod grad_accumulate;
pub mod half;
pub mod linear;
pub mod loss;
pub mod pool;
pub mod sgd;
pub mod shape;
pub mod shortcut;
