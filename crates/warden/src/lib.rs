//! What warden's programs share: the on-disk protocol of `supervise/` (runit-compatible),
//! control bytes, TAI64N timestamps, service-directory settings and the signal pipe.
#![forbid(unsafe_code)]

pub mod control;
pub mod entry;
pub mod service;
pub mod signal;
pub mod status;
pub mod svdir;
pub mod tai;
pub mod write;

pub use tai::Tai64N;
