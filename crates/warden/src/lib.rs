//! What warden's programs share: the on-disk protocol of `supervise/` (runit-compatible),
//! control bytes, TAI64N timestamps, service-directory settings, the signal pipe and how
//! children are started.
// unsafe only in `spawn`, where clone3 and the child's raw syscalls need it, and `ids`.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cgroupfs;
pub mod companion;
pub mod control;
pub mod deps;
pub mod diag;
pub mod entry;
pub mod ids;
pub mod runas;
pub mod service;
pub mod signal;
pub mod spawn;
pub mod status;
pub mod svdir;
pub mod tai;
pub mod write;

pub use tai::Tai64N;
