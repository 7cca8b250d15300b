//! On-disk constants of EROFS, from the Linux kernel's `fs/erofs/erofs_fs.h`.

/// Block size in bytes (the only one this crate writes).
pub(crate) const BLOCK_SIZE: u64 = 4096;
/// log2 of [`BLOCK_SIZE`].
pub(crate) const BLOCK_BITS: u8 = 12;
/// `EROFS_SUPER_OFFSET`: byte offset of the superblock.
pub(crate) const SUPER_OFFSET: u64 = 1024;
/// Size of `struct erofs_super_block`.
pub(crate) const SUPER_SIZE: usize = 128;
/// `EROFS_SUPER_MAGIC_V1`.
pub(crate) const MAGIC: u32 = 0xE0F5_E1E2;
/// nids count 32-byte slots from `meta_blkaddr`.
pub(crate) const NID_SLOT: u64 = 32;
/// `struct erofs_inode_compact`.
pub(crate) const COMPACT_SIZE: u64 = 32;
/// `struct erofs_inode_extended`.
pub(crate) const EXTENDED_SIZE: u64 = 64;
/// `struct erofs_dirent`.
pub(crate) const DIRENT_SIZE: u64 = 12;
/// `EROFS_NAME_LEN`.
pub(crate) const NAME_LEN: usize = 255;
/// `struct erofs_xattr_ibody_header`.
pub(crate) const XATTR_IBODY_HEADER: u64 = 12;
/// `struct erofs_xattr_entry` (without name and value).
pub(crate) const XATTR_ENTRY_HEADER: u64 = 4;

/// `EROFS_INODE_FLAT_PLAIN`.
pub(crate) const LAYOUT_FLAT_PLAIN: u16 = 0;
/// `EROFS_INODE_FLAT_INLINE`.
pub(crate) const LAYOUT_FLAT_INLINE: u16 = 2;

/// File types in `erofs_dirent.file_type` (the generic `FT_*` values).
pub(crate) const FT_REG: u8 = 1;
pub(crate) const FT_DIR: u8 = 2;
pub(crate) const FT_CHR: u8 = 3;
pub(crate) const FT_BLK: u8 = 4;
pub(crate) const FT_FIFO: u8 = 5;
pub(crate) const FT_SOCK: u8 = 6;
pub(crate) const FT_SYMLINK: u8 = 7;

/// POSIX file type bits of `i_mode`.
pub(crate) const S_IFMT: u16 = 0o170_000;
pub(crate) const S_IFSOCK: u16 = 0o140_000;
pub(crate) const S_IFLNK: u16 = 0o120_000;
pub(crate) const S_IFREG: u16 = 0o100_000;
pub(crate) const S_IFBLK: u16 = 0o060_000;
pub(crate) const S_IFDIR: u16 = 0o040_000;
pub(crate) const S_IFCHR: u16 = 0o020_000;
pub(crate) const S_IFIFO: u16 = 0o010_000;

/// Xattr name prefixes by `e_name_index` (`EROFS_XATTR_INDEX_*`). Index 5 (lustre) is never
/// written. For the two POSIX ACL indexes the whole name is the prefix and the suffix is empty.
const XATTR_PREFIXES: [(u8, &[u8]); 6] = [
    (1, b"user."),
    (2, b"system.posix_acl_access"),
    (3, b"system.posix_acl_default"),
    (4, b"trusted."),
    (5, b"lustre."),
    (6, b"security."),
];

/// Splits a full xattr name into (`e_name_index`, suffix) for writing.
pub(crate) fn xattr_split(name: &[u8]) -> Option<(u8, &[u8])> {
    for (index, prefix) in XATTR_PREFIXES {
        if index == 5 {
            continue;
        }
        if let Some(rest) = name.strip_prefix(prefix) {
            let acl = index == 2 || index == 3;
            if acl == rest.is_empty() {
                return Some((index, rest));
            }
        }
    }
    None
}

/// The name prefix for an `e_name_index`.
pub(crate) fn xattr_prefix(index: u8) -> Option<&'static [u8]> {
    XATTR_PREFIXES
        .iter()
        .find(|(i, _)| *i == index)
        .map(|(_, p)| *p)
}

/// Linux `new_encode_dev`; `None` when the numbers do not round-trip through 32 bits.
pub(crate) fn encode_dev(major: u32, minor: u32) -> Option<u32> {
    if major >= 1 << 12 || minor >= 1 << 20 {
        return None;
    }
    Some((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// Linux `new_decode_dev`: (major, minor).
pub(crate) fn decode_dev(dev: u32) -> (u32, u32) {
    ((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// Little-endian field readers over a slice; `None` when out of range.
pub(crate) fn le16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([*s.first()?, *s.get(1)?]))
}

/// See [`le16`].
pub(crate) fn le32(b: &[u8], off: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(s))
}

/// See [`le16`].
pub(crate) fn le64(b: &[u8], off: usize) -> Option<u64> {
    let s: [u8; 8] = b.get(off..off.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_roundtrip() {
        for (ma, mi) in [(0, 0), (1, 3), (8, 1), (259, 65536), (4095, (1 << 20) - 1)] {
            let d = encode_dev(ma, mi).unwrap();
            assert_eq!(decode_dev(d), (ma, mi));
        }
        assert_eq!(encode_dev(4096, 0), None);
        assert_eq!(encode_dev(0, 1 << 20), None);
        // Same as glibc makedev for small numbers.
        assert_eq!(encode_dev(8, 1), Some(0x801));
    }

    #[test]
    fn xattr_prefixes() {
        assert_eq!(xattr_split(b"user.a"), Some((1, &b"a"[..])));
        assert_eq!(
            xattr_split(b"security.capability"),
            Some((6, &b"capability"[..]))
        );
        assert_eq!(xattr_split(b"system.posix_acl_access"), Some((2, &b""[..])));
        assert_eq!(xattr_split(b"system.posix_acl_accessx"), None);
        assert_eq!(
            xattr_split(b"trusted.overlay.opaque"),
            Some((4, &b"overlay.opaque"[..]))
        );
        assert_eq!(xattr_split(b"user."), None);
        assert_eq!(xattr_split(b"lustre.x"), None);
        assert_eq!(xattr_split(b"system.other"), None);
    }
}
