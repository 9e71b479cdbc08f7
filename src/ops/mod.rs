//! One file per kernel family (a folder where the family has several kernels, as `conv`): the host
//! wrapper (dispatch math, bind groups) and, as its `cpu` submodule, a plain-Rust reference (f64
//! accumulation) of the forward and the backward.
pub mod adam;
pub mod batchnorm;
pub mod channel_dot;
pub mod conv;
pub mod conv_coop;
pub mod elementwise;
pub mod grad_accumulate;
pub mod half;
pub mod linear;
pub mod loss;
pub mod param_groups;
pub mod pool;
pub mod sgd;
pub mod shape;
pub mod shortcut;
