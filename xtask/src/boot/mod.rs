//! The qemu boot image: static binaries, an initramfs written in Rust (no root needed), an
//! ext4 disk, and a qemu runner that drives the serial console. Used by `cargo xtask image`,
//! `cargo xtask qemu`, and included by tests/tests/boot.rs and bench/boot.py (through
//! `cargo xtask image`). Standard library only, so the tests can include it with `#[path]`.

#![allow(dead_code)]

pub mod cli;
pub mod cpio;
pub mod debian;
pub mod image;
pub mod qemu;
pub mod tree;
