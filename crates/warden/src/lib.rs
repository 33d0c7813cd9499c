//! warden's system layer: how its programs start children (`spawn`, the C entry point of
//! `entry`), catch signals (`signal`), find their companions, read cgroups and mounts, and
//! apply users and limits. The protocol they speak (the `supervise/` record, control bytes,
//! settings, TAI64N, write-by-rename, diagnostics) is `warden_protocol`, re-exported here
//! under the same names, so `warden::status` is the protocol's.
// unsafe only in `spawn`, where clone3 and the child's raw syscalls need it, `ids`, and
// `entry`'s reading of the C `main`'s argv.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cgroupfs;
pub mod companion;
pub mod entry;
pub mod ids;
pub mod mountinfo;
pub mod poll;
pub mod runas;
pub mod signal;
pub mod spawn;

pub use warden_protocol::Tai64N;
pub use warden_protocol::{backoff, control, deps, diag, say, service, status, svdir, tai, write};
