//! Guest storage primitives for the charter guest agent: verified layer devices, overlay and
//! tmpfs mounts.
//!
//! The agent runs as root inside the sandbox (DESIGN.md D6, `sandbox` launcher). Every file the
//! host hands it is hostile. This crate turns a host-provided layer image (DESIGN.md D4: an
//! EROFS image, then a dm-verity v1 superblock and hash tree, see `charter_image::layer`) into a
//! read-only block device whose contents are exactly the bytes the policy's root hash names,
//! and mounts the container root file systems built from such devices.
//!
//! # Why the layer is copied into sealed memory
//!
//! In the `qemu` launcher the guest puts each layer under real dm-verity: the kernel checks
//! every block against the tree when it is read, so the host cannot change a layer after it was
//! accepted. The sandbox has no device-mapper. Verifying the image file once and then
//! loop-mounting the *file* would be a time-of-check/time-of-use hole: the host owns the file
//! and could rewrite it (or swap it) the moment after the check, and the kernel would serve the
//! new bytes from the next page-cache miss on.
//!
//! [`VerifiedLayer::attach`] therefore never mounts the host's file. It:
//!
//! 1. opens the image (regular files and block devices only, opened non-blocking so a FIFO
//!    cannot hang the agent), reads the EROFS superblock with `charter-erofs`'s bounded reader
//!    to learn the data size, and requires the appended verity superblock to carry charter's
//!    fixed parameters for exactly that many blocks; every size is bounded
//!    ([`AttachOptions::max_data_size`]);
//! 2. copies exactly the EROFS data region into an anonymous `memfd` (guest memory, not a file
//!    the host can reach by path);
//! 3. seals the memfd (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL`): from then on
//!    the kernel refuses every write, truncation, growth or writable mapping of those pages, to
//!    every process, including one that reopens the memfd through `/proc/PID/fd`;
//! 4. computes the dm-verity root hash of the **sealed** bytes with `charter-verity` (the same
//!    code that builds the tree, byte-identical to `veritysetup`) and compares it with the
//!    policy's root hash; hashing after sealing (rather than while copying) leaves no window in
//!    which the copy could change between being hashed and being frozen;
//! 5. attaches the memfd to a free loop device read-only (`LOOP_CONFIGURE` with
//!    `LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR`, no partition scan, so a hostile partition table
//!    is never parsed), and checks with `LOOP_GET_STATUS64` that the device is read-only and
//!    backed by that very memfd inode.
//!
//! The mounted layer is thus served from the only copy, which was verified in full and cannot
//! change: a layer file modified, truncated or swapped after `attach` has no effect. The cost is
//! memory: each attached layer occupies its EROFS size in guest RAM (shmem, swappable) for as
//! long as it is attached, bounded per layer by [`AttachOptions::max_data_size`].
//!
//! Residual risks, for `docs/threat-model.md`: the sandbox launcher's guest is an ordinary
//! process of the host kernel, so a host *root* can still ptrace the agent, write its memory, or
//! re-point a read-only loop device at another file (`LOOP_CHANGE_FD` is allowed on read-only
//! loop devices); nothing inside a process can prevent that, which is why the sandbox pairs with
//! the insecure simulated TEE only. What the sealed copy does rule out is everything that goes
//! through storage: the layer file, its directory, the disk and the page cache of the file.
//!
//! # Other primitives
//!
//! [`mount_overlay`] builds a container root from verified layer mounts plus a writable upper
//! directory, [`mount_tmpfs`] makes size-bounded scratch, [`unmount`] undoes either. Every
//! failure is an [`Error`] naming the path, device and system call involved.
//!
//! Unsafe code is confined to the loop-device ioctls in one private module.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod crypt;
mod dm;
mod error;
mod layer;
mod loopdev;
mod mounts;

pub use crypt::{EncryptedScratch, SCRATCH_BLOCK_SIZE};
pub use dm::{AttachedLayer, DmVerityLayer, DM_CONTROL};
pub use error::Error;
pub use layer::{AttachOptions, VerifiedLayer, DEFAULT_MAX_DATA_SIZE, LAYER_BLOCK_SIZE};
pub use mounts::{bind_mount, mount_overlay, mount_tmpfs, unmount};
