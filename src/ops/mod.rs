//! One file per kernel family: the host wrapper (dispatch math, bind groups) and a plain-Rust CPU
//! reference (f64 accumulation) of the forward and the backward.
pub mod conv;
pub mod elementwise;
