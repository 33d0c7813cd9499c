//! warden's protocol: what its programs and their clients agree on, on disk and on the wire.
//! The `supervise/` status record (runit-compatible, plus warden's extended status), the
//! control bytes, the `supervise/` file names (`event/` included) and the cgroup naming,
//! service-directory settings and dependency files, TAI64N timestamps, signal names,
//! write-by-rename, and the diagnostics that never fail. No unsafe code: the system layer
//! (spawning, the signal pipe, mounts, poll) is the `warden` crate.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod control;
pub mod deps;
pub mod diag;
pub mod service;
pub mod signal;
pub mod status;
pub mod svdir;
pub mod tai;
pub mod write;

pub use tai::Tai64N;
