//! Real loop devices and mounts. These need root (CAP_SYS_ADMIN, /dev/loop-control, erofs,
//! overlayfs and tmpfs in the kernel); CI runs them as root with `--include-ignored`.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use charter_mount::{mount_overlay, mount_tmpfs, unmount, AttachOptions, Error, VerifiedLayer};
use rustix::fs::SealFlags;
use support::{base_layer, build_layer, open_rw, Entry};

/// Lazily unmounts on drop if a test fails before its explicit [`unmount`].
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

fn mkdir(p: &Path) -> PathBuf {
    std::fs::create_dir_all(p).unwrap();
    p.to_path_buf()
}

fn loop_sysfs(device: &Path) -> PathBuf {
    let name = device.file_name().unwrap();
    Path::new("/sys/block").join(name)
}

/// Whether the loop device still has a backing file, waiting up to 5 s for it to go away.
fn detached_within(device: &Path) -> bool {
    let backing = loop_sysfs(device).join("loop/backing_file");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if !backing.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn attach_mount_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, busybox) = base_layer(dir.path());
    let verified = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap();
    assert_eq!(verified.root_hash(), &layer.root_hash);
    assert_eq!(verified.data_size(), layer.data_size);
    assert_eq!(verified.source(), layer.path);
    let device = verified.device().to_path_buf();
    assert!(
        device.to_str().unwrap().starts_with("/dev/loop"),
        "{device:?}"
    );

    // The kernel sees a read-only device of exactly the data size, backed by our memfd.
    let sys = loop_sysfs(&device);
    assert_eq!(std::fs::read_to_string(sys.join("ro")).unwrap().trim(), "1");
    let sectors: u64 = std::fs::read_to_string(sys.join("size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(sectors * 512, layer.data_size);
    let backing = std::fs::read_to_string(sys.join("loop/backing_file")).unwrap();
    assert!(
        backing.starts_with("/memfd:charter-layer:")
            && backing.contains(&hex::encode(layer.root_hash)),
        "{backing}"
    );
    assert_eq!(
        std::fs::read_to_string(sys.join("loop/autoclear"))
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string(sys.join("loop/partscan"))
            .unwrap()
            .trim(),
        "0"
    );
    // Writing to the block device is refused, even for root.
    let dev = OpenOptions::new().write(true).open(&device).unwrap();
    let err = dev.write_all_at(&[0u8; 4096], 0).unwrap_err();
    assert_eq!(errno(&err), 1, "{err}"); // EPERM
    drop(dev);

    let target = mkdir(&dir.path().join("mnt"));
    verified.mount(&target).unwrap();
    let _cleanup = Cleanup(target.clone());
    assert_eq!(
        std::fs::read(target.join("etc/motd")).unwrap(),
        b"hello from the verified layer\n"
    );
    assert_eq!(std::fs::read(target.join("bin/busybox")).unwrap(), busybox);
    assert_eq!(
        std::fs::metadata(target.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    // Read-only, nodev, nosuid.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
        .expect("mount listed");
    let opts = line.split(' ').nth(5).unwrap();
    for o in ["ro", "nodev", "nosuid"] {
        assert!(opts.split(',').any(|x| x == o), "{o} missing in {line}");
    }
    assert!(line.contains(" - erofs "), "{line}");
    let err = std::fs::write(target.join("etc/new"), b"x").unwrap_err();
    assert_eq!(errno(&err), libc_erofs(), "{err}");

    // Dropping a mounted layer leaves the device to the mount; unmounting then detaches it.
    drop(verified);
    assert!(loop_sysfs(&device).join("loop/backing_file").exists());
    assert_eq!(
        std::fs::read(target.join("etc/motd")).unwrap(),
        b"hello from the verified layer\n"
    );
    unmount(&target).unwrap();
    assert!(detached_within(&device), "{device:?} still attached");
}

fn libc_erofs() -> i32 {
    30 // EROFS
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn legacy_loop_setup_gives_the_same_read_only_device() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, busybox) = base_layer(dir.path());
    let options = AttachOptions::default().legacy_loop_setup(true);
    let verified = VerifiedLayer::attach_with(&layer.path, &layer.root_hash, &options).unwrap();
    let device = verified.device().to_path_buf();
    let sys = loop_sysfs(&device);
    assert_eq!(std::fs::read_to_string(sys.join("ro")).unwrap().trim(), "1");
    assert_eq!(
        std::fs::read_to_string(sys.join("loop/autoclear"))
            .unwrap()
            .trim(),
        "1"
    );
    let target = mkdir(&dir.path().join("mnt"));
    verified.mount(&target).unwrap();
    let _cleanup = Cleanup(target.clone());
    assert_eq!(std::fs::read(target.join("bin/busybox")).unwrap(), busybox);
    unmount(&target).unwrap();
    drop(verified);
    assert!(detached_within(&device), "{device:?} still attached");
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn dropping_an_unmounted_layer_detaches_it() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let verified = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap();
    let device = verified.device().to_path_buf();
    assert!(loop_sysfs(&device).join("loop/backing_file").exists());
    drop(verified);
    assert!(detached_within(&device), "{device:?} still attached");
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn changing_the_source_after_attach_has_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, busybox) = base_layer(dir.path());
    let verified = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap();

    // The host rewrites the motd in place, then every byte of the file, then deletes it.
    let image = std::fs::read(&layer.path).unwrap();
    let motd = b"hello from the verified layer\n";
    let at = image
        .windows(motd.len())
        .position(|w| w == motd)
        .expect("motd stored inline");
    let evil = b"HELLO FROM THE EVIL HOST!!!!!\n";
    assert_eq!(evil.len(), motd.len());
    open_rw(&layer.path).write_all_at(evil, at as u64).unwrap();

    let target = mkdir(&dir.path().join("mnt"));
    verified.mount(&target).unwrap();
    let _cleanup = Cleanup(target.clone());
    assert_eq!(std::fs::read(target.join("etc/motd")).unwrap(), motd);

    let f = open_rw(&layer.path);
    f.write_all_at(&vec![0u8; image.len()], 0).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    std::fs::remove_file(&layer.path).unwrap();
    // Evict every clean page cache page: reads must come from the sealed copy again.
    std::fs::write("/proc/sys/vm/drop_caches", b"3\n").unwrap();
    assert_eq!(std::fs::read(target.join("etc/motd")).unwrap(), motd);
    assert_eq!(std::fs::read(target.join("bin/busybox")).unwrap(), busybox);
    unmount(&target).unwrap();
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn the_verified_copy_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let verified = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap();
    let fd = verified.sealed_copy();
    let seals = rustix::fs::fcntl_get_seals(fd).unwrap();
    assert!(
        seals.contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL),
        "{seals:?}"
    );
    // No more seals can be added or removed.
    assert_eq!(
        rustix::fs::fcntl_add_seals(fd, SealFlags::FUTURE_WRITE),
        Err(rustix::io::Errno::PERM)
    );
    // Reopened through /proc (as another root process could), it still cannot change.
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let reopened = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&proc_path)
        .unwrap();
    let err = reopened.write_all_at(b"evil", 4096).unwrap_err();
    assert_eq!(errno(&err), 1, "{err}"); // EPERM
    let err = reopened.set_len(4096).unwrap_err();
    assert_eq!(errno(&err), 1, "{err}");
    let err = reopened.set_len(layer.data_size + 4096).unwrap_err();
    assert_eq!(errno(&err), 1, "{err}");
    // Still exactly the verified data.
    let size = rustix::fs::fstat(&reopened).map(|st| st.st_size).unwrap();
    assert_eq!(size as u64, layer.data_size);
    let mut buf = vec![0u8; layer.data_size as usize];
    reopened.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        buf,
        std::fs::read(&layer.path).unwrap()[..layer.data_size as usize]
    );
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn concurrent_attaches_get_distinct_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (layer, _) = base_layer(dir.path());
    let layers: Vec<VerifiedLayer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| VerifiedLayer::attach(&layer.path, &layer.root_hash)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let mut devices: Vec<_> = layers.iter().map(|l| l.device().to_path_buf()).collect();
    devices.sort();
    devices.dedup();
    assert_eq!(devices.len(), 6, "{devices:?}");
    drop(layers);
    for d in &devices {
        assert!(detached_within(d), "{d:?} still attached");
    }
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn overlay_of_two_layers_with_tmpfs_upper() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = base_layer(dir.path());
    let top = build_layer(
        dir.path(),
        "top.img",
        &[
            Entry::Dir("etc"),
            Entry::File("etc/.wh.gone", b"", 0o644),
            Entry::File("etc/added", b"from the top layer\n", 0o600),
        ],
    );
    let base_v = VerifiedLayer::attach(&base.path, &base.root_hash).unwrap();
    let top_v = VerifiedLayer::attach(&top.path, &top.root_hash).unwrap();
    let base_mnt = mkdir(&dir.path().join("l0"));
    let top_mnt = mkdir(&dir.path().join("l1"));
    base_v.mount(&base_mnt).unwrap();
    let _c0 = Cleanup(base_mnt.clone());
    top_v.mount(&top_mnt).unwrap();
    let _c1 = Cleanup(top_mnt.clone());
    // The whiteout is in the top layer as overlayfs expects it: a 0:0 character device.
    let wh = std::fs::symlink_metadata(top_mnt.join("etc/gone")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &wh.file_type()
    ));
    assert_eq!(wh.rdev(), 0);

    let scratch = mkdir(&dir.path().join("scratch"));
    mount_tmpfs(&scratch, 16 << 20, 0o700).unwrap();
    let _c2 = Cleanup(scratch.clone());
    let upper = mkdir(&scratch.join("upper"));
    let work = mkdir(&scratch.join("work"));
    let rootfs = mkdir(&dir.path().join("rootfs"));
    mount_overlay(&[&top_mnt, &base_mnt], &upper, &work, &rootfs).unwrap();
    let _c3 = Cleanup(rootfs.clone());

    assert_eq!(
        std::fs::read(rootfs.join("etc/motd")).unwrap(),
        b"hello from the verified layer\n"
    );
    assert!(base_mnt.join("etc/gone").exists());
    assert!(
        !rootfs.join("etc/gone").exists(),
        "whiteout must hide the lower file"
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/added")).unwrap(),
        b"from the top layer\n"
    );
    let mut names: Vec<_> = std::fs::read_dir(rootfs.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["added", "motd"]);

    // Writes land in the tmpfs upper; the verified layers are untouched.
    std::fs::write(rootfs.join("etc/motd"), b"changed by the container\n").unwrap();
    let mut f = std::fs::File::create(rootfs.join("new-file")).unwrap();
    f.write_all(b"scratch").unwrap();
    drop(f);
    assert_eq!(
        std::fs::read(upper.join("etc/motd")).unwrap(),
        b"changed by the container\n"
    );
    assert_eq!(std::fs::read(upper.join("new-file")).unwrap(), b"scratch");
    assert_eq!(
        std::fs::read(base_mnt.join("etc/motd")).unwrap(),
        b"hello from the verified layer\n"
    );
    // Deleting a lower file through the overlay creates a whiteout in the upper.
    std::fs::remove_file(rootfs.join("etc/added")).unwrap();
    assert!(!rootfs.join("etc/added").exists());
    assert!(top_mnt.join("etc/added").exists());

    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(rootfs.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - overlay overlay "), "{line}");
    let lowerdir = format!("lowerdir={}:{}", top_mnt.display(), base_mnt.display());
    assert!(line.contains(&lowerdir), "{line}");
    assert!(
        !line.contains("metacopy=on") && !line.contains("redirect_dir=on"),
        "{line}"
    );
    assert!(
        line.split(' ')
            .nth(5)
            .unwrap()
            .split(',')
            .any(|o| o == "nodev"),
        "{line}"
    );

    // A busy mount cannot be unmounted (no lazy detach): the error names it.
    let open_file = std::fs::File::open(rootfs.join("etc/motd")).unwrap();
    match unmount(&rootfs).unwrap_err() {
        Error::Unmount { target, source } => {
            assert_eq!(target, rootfs);
            assert_eq!(errno(&source), 16, "{source}"); // EBUSY
        }
        other => panic!("expected Unmount, got {other:?}"),
    }
    drop(open_file);
    unmount(&rootfs).unwrap();
    unmount(&top_mnt).unwrap();
    unmount(&base_mnt).unwrap();
    unmount(&scratch).unwrap();
    let (b, t) = (base_v.device().to_path_buf(), top_v.device().to_path_buf());
    drop((base_v, top_v));
    assert!(detached_within(&b) && detached_within(&t));
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn tmpfs_is_bounded_and_has_the_mode() {
    let dir = tempfile::tempdir().unwrap();
    let t = mkdir(&dir.path().join("t"));
    mount_tmpfs(&t, 256 << 10, 0o1770).unwrap();
    let _c = Cleanup(t.clone());
    let meta = std::fs::metadata(&t).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o1770);
    let mut f = std::fs::File::create(t.join("big")).unwrap();
    let err = f.write_all(&vec![1u8; 1 << 20]).unwrap_err();
    assert_eq!(errno(&err), 28, "{err}"); // ENOSPC
    drop(f);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(t.to_str().unwrap()))
        .unwrap();
    assert!(line.contains(" - tmpfs tmpfs "), "{line}");
    assert!(line.contains("size=256k"), "{line}");
    let opts = line.split(' ').nth(5).unwrap();
    assert!(opts.split(',').any(|o| o == "nodev") && opts.split(',').any(|o| o == "nosuid"));
    unmount(&t).unwrap();
    assert!(!t.join("big").exists());
}

#[test]
#[ignore = "needs root: loop devices and mount"]
fn mount_and_unmount_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let not_mounted = mkdir(&dir.path().join("plain"));
    match unmount(&not_mounted).unwrap_err() {
        Error::Unmount { target, source } => {
            assert_eq!(target, not_mounted);
            assert_eq!(errno(&source), 22, "{source}"); // EINVAL: not a mount point
        }
        other => panic!("expected Unmount, got {other:?}"),
    }
    let missing = dir.path().join("missing");
    let err = mount_tmpfs(&missing, 1 << 20, 0o755).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(
        matches!(&err, Error::Mount { fstype: "tmpfs", target, .. } if target == &missing),
        "{err:?}"
    );

    let (layer, _) = base_layer(dir.path());
    let verified = VerifiedLayer::attach(&layer.path, &layer.root_hash).unwrap();
    let err = verified.mount(&missing).unwrap_err();
    match &err {
        Error::Mount {
            fstype,
            source_desc,
            target,
            ..
        } => {
            assert_eq!(*fstype, "erofs");
            assert_eq!(Path::new(source_desc), verified.device());
            assert_eq!(target, &missing);
        }
        other => panic!("expected Mount, got {other:?}"),
    }
    // A failed mount does not keep the device.
    let device = verified.device().to_path_buf();
    drop(verified);
    assert!(detached_within(&device));
}
