//! The OCI runtime side of the guest agent (DESIGN.md D8).
//!
//! The agent asks the policy engine whether a container may be created with exact fields;
//! with an allowed decision it fills a [`ContainerConfig`], and this crate builds the OCI
//! runtime spec **itself** from those fields ([`build_spec`], [`write_bundle`]) and runs it
//! with `runc` ([`Runc`]). No spec or spec fragment ever comes from the host.
//!
//! # The spec
//!
//! [`build_spec`] validates the configuration (typed [`SpecError`]s that name the field and
//! never print an environment value) and produces:
//!
//! - no hooks, annotations or console, ever: the [`Spec`] model has no such fields;
//! - `root.path` = the rootfs, which must be absolute and lexically canonical (no `..`, `.`,
//!   `//`, trailing `/`; not `/`); `root.readonly` as configured. The cwd, bundle, mount
//!   destinations and bind-mount sources are held to the same rule. Symlinks are not
//!   resolved here: the agent creates those paths itself;
//! - the init process: args (non-empty), env (`NAME=value`), cwd, uid, gid, additional gids,
//!   umask, `noNewPrivileges`, the five capability sets (names checked against
//!   [`KNOWN_CAPABILITIES`], each set sorted by capability number and deduplicated),
//!   `RLIMIT_NOFILE` soft = hard = 1024, `terminal: false`;
//! - runc's default mounts (`/proc`; `/dev` tmpfs; `/dev/pts`; `/dev/shm`; `/dev/mqueue`;
//!   `/sys` read-only; `/sys/fs/cgroup` read-only), then the extra mounts in the given order;
//! - runc's default masked paths ([`DEFAULT_MASKED_PATHS`]) and read-only paths
//!   ([`DEFAULT_READONLY_PATHS`]);
//! - new pid, ipc, uts and mount namespaces. **No network namespace**: the containers of a
//!   group share the sandbox's network namespace, as in a pod. No user namespace, no cgroup
//!   namespace;
//! - a device cgroup denying every device; runc then allows and creates its default device
//!   nodes (`null`, `zero`, `full`, `random`, `urandom`, `tty`, `ptmx`).
//!
//! **Privileged** containers (only ever built when the policy allows elevation) differ in
//! exactly these ways: bounding, effective and permitted capability sets are every known
//! capability (the union of the given sets with all of them; inheritable and ambient stay as
//! given); no masked and no read-only paths; `/sys` and `/sys/fs/cgroup` are mounted
//! read-write; the device cgroup allows every device. Kept simple on purpose: the guest's
//! `/dev` nodes are **not** bind-mounted in; a privileged process may `mknod` what it needs.
//!
//! Output is deterministic: the same configuration gives an equal [`Spec`] and byte-identical
//! `config.json` ([`spec_json`]).
//!
//! ## Why a small serde model and not the `oci-spec` crate
//!
//! `oci-spec` 0.10's runtime types store capability sets in `HashSet`s, so their JSON order
//! changes from run to run, and they can express hooks, network and user namespaces and
//! annotations, which a charter spec must never carry. The model here has exactly the fields
//! runc needs (all `Vec`s), so the guarantees above hold by construction, at the cost of about
//! 150 lines of plain serde structs whose field names follow the runtime spec.
//!
//! # Running
//!
//! [`Runc`] shells out to the `runc` binary (`runc create/start/kill/delete/state/exec`) with
//! a state root of its own. The container's stdio is passed through ([`ContainerStdio`]): the
//! container ends of pipes (or `/dev/null`, when the policy does not allow stdio access)
//! become runc's stdio and so the container process's; the agent keeps the other ends
//! ([`HostStdio`]). runc's own error text is taken from its JSON log (`--log-format json`) for
//! those subcommands, and from its stderr for the others; runc may also print its final error
//! line to the stderr it was given (the container's), which only matters on failure.
//!
//! Exit statuses: the agent calls [`become_subreaper`] once at start. `runc create` and
//! `runc exec --detach` return while the processes they started run on; those are then the
//! agent's children, and [`wait_exit`] reaps one of them by pid (never "any child", so
//! `std::process::Command` children keep working). Every pid returned by [`Runc::create`] and
//! [`Runc::exec`] must be waited for exactly once, or it stays a zombie. runc's intermediate
//! processes are reaped by runc itself. The agent must not set `SIGCHLD` to `SIG_IGN`
//! (children would be reaped by the kernel and [`wait_exit`] would fail with
//! [`Error::NotAChild`]).
#![forbid(unsafe_code)]
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
#![warn(missing_docs)]

mod caps;
mod error;
mod process;
mod runc;
mod spec;
mod stdio;

pub use caps::{capability_number, KNOWN_CAPABILITIES};
pub use error::{Error, Result, SpecError, MAX_RUNC_MESSAGE};
pub use process::{become_subreaper, try_wait, wait_exit, Pid, ProcessExit};
pub use runc::{find_runc, ContainerState, ContainerStatus, Runc, RUNC_PATH_ENV};
pub use spec::{
    build_process, build_spec, check_canonical, normalize_capabilities, spec_json, to_json,
    validate_id, write_bundle, Capabilities, ContainerConfig, DeviceRule, ExecConfig, Linux, Mount,
    MountConfig, Namespace, NamespaceKind, Process, ProcessConfig, Resources, Rlimit, Root, Spec,
    User, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, NOFILE_LIMIT, OCI_VERSION,
};
pub use stdio::{ContainerStdio, HostStdio, StdioMode};
