//! Tree geometry (where each level lives) and block hashing, as libcryptsetup's
//! `lib/verity/verity_hash.c` defines them.

use sha2::digest::Digest;

use crate::params::{HashAlgorithm, HashFormat, RootHash, VerityParams, MAX_DIGEST_SIZE};
use crate::superblock::SUPERBLOCK_SIZE;
use crate::Error;

/// libcryptsetup's limit on the number of tree levels.
pub const MAX_LEVELS: usize = 63;

/// One level of the hash tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// Byte offset of the level's first hash block in the hash device.
    pub offset: u64,
    /// Number of hash blocks in the level.
    pub blocks: u64,
}

/// Where everything lives in the hash device, for given parameters and data size.
///
/// Levels are stored top level first: `levels[0]` (the one hashing the data blocks) is the last
/// in the file. With a superblock it sits at `hash_offset` and the tree starts at the next hash
/// block boundary after its 512 bytes; without one the tree starts at `hash_offset` rounded
/// *down* to a hash block boundary (libcryptsetup's `VERITY_hash_offset_block`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    /// Number of data blocks hashed.
    pub data_blocks: u64,
    /// Digests per hash block: the largest power of two that fits.
    pub hashes_per_block: u64,
    /// Bytes between consecutive digests in a hash block (V1: digest size rounded up to a power
    /// of two; V0: the digest size).
    pub digest_stride: usize,
    /// Hash block size in bytes.
    pub hash_block_size: u64,
    /// Offset of the superblock, if there is one.
    pub superblock_offset: Option<u64>,
    /// Byte offset of the first tree block (the top level).
    pub tree_offset: u64,
    /// Levels, lowest (hashing data blocks) first. Empty when there is a single data block:
    /// the root hash is then the digest of that block.
    pub levels: Vec<Level>,
}

impl TreeLayout {
    /// Computes the layout. `data_blocks` must be at least 1; `hash_offset` a multiple of 512.
    pub fn new(
        params: &VerityParams,
        data_blocks: u64,
        hash_offset: u64,
        superblock: bool,
    ) -> Result<TreeLayout, Error> {
        params.validate()?;
        if data_blocks == 0 {
            return Err(Error::NoDataBlocks {
                data_size: 0,
                block_size: params.data_block_size,
            });
        }
        if !hash_offset.is_multiple_of(512) {
            return Err(Error::InvalidHashOffset(hash_offset));
        }
        let hbs = u64::from(params.hash_block_size);
        let digest = params.hash.digest_size();
        let digest_u64 = u64::try_from(digest).map_err(|_| Error::SizeOverflow)?;
        // Largest power of two <= hash_block_size / digest_size (get_bits_down).
        let fit = hbs.checked_div(digest_u64).unwrap_or(0);
        if fit < 2 {
            return Err(Error::SizeOverflow);
        }
        let bits = fit.ilog2();
        let hashes_per_block = 1u64 << bits;
        let digest_stride = match params.format {
            HashFormat::V0 => digest,
            HashFormat::V1 => digest.next_power_of_two(),
        };

        // Level sizes bottom-up: ceil(n / hpb^(i+1)), until one block remains.
        let mut sizes = Vec::new();
        let mut n = data_blocks;
        while n > 1 {
            n = n.div_ceil(hashes_per_block);
            sizes.push(n);
            if sizes.len() > MAX_LEVELS {
                return Err(Error::SizeOverflow);
            }
        }

        let (superblock_offset, tree_block) = if superblock {
            let end = hash_offset
                .checked_add(SUPERBLOCK_SIZE as u64)
                .ok_or(Error::SizeOverflow)?;
            (Some(hash_offset), end.div_ceil(hbs))
        } else {
            (
                None,
                hash_offset.checked_div(hbs).ok_or(Error::SizeOverflow)?,
            )
        };
        let tree_offset = tree_block.checked_mul(hbs).ok_or(Error::SizeOverflow)?;

        // Top level first in the file.
        let mut levels = vec![
            Level {
                offset: 0,
                blocks: 0
            };
            sizes.len()
        ];
        let mut pos = tree_offset;
        for (level, &blocks) in levels.iter_mut().zip(sizes.iter()).rev() {
            *level = Level {
                offset: pos,
                blocks,
            };
            let len = blocks.checked_mul(hbs).ok_or(Error::SizeOverflow)?;
            pos = pos.checked_add(len).ok_or(Error::SizeOverflow)?;
        }
        // The whole data area must be addressable too.
        data_blocks
            .checked_mul(u64::from(params.data_block_size))
            .ok_or(Error::SizeOverflow)?;
        Ok(TreeLayout {
            data_blocks,
            hashes_per_block,
            digest_stride,
            hash_block_size: hbs,
            superblock_offset,
            tree_offset,
            levels,
        })
    }

    /// The dm-verity table's `<hash_start_block>`: the first tree block, in hash blocks.
    pub fn hash_start_block(&self) -> u64 {
        self.tree_offset
            .checked_div(self.hash_block_size)
            .unwrap_or(0)
    }

    /// Number of hash blocks in the tree (`veritysetup`'s "Hash blocks").
    pub fn hash_blocks(&self) -> u64 {
        self.levels.iter().map(|l| l.blocks).sum()
    }

    /// Byte offset one past the last tree block (level 0 is stored last). Equals
    /// `tree_offset` for a one-block tree.
    pub fn tree_end(&self) -> u64 {
        self.levels.first().map_or(self.tree_offset, |l0| {
            l0.offset
                .saturating_add(l0.blocks.saturating_mul(self.hash_block_size))
        })
    }

    /// Where the digest of block `index` of the level below level `level` (data blocks for
    /// level 0) is stored: byte offset of the slot in the hash device.
    pub fn digest_offset(&self, level: usize, index: u64) -> Option<u64> {
        let l = self.levels.get(level)?;
        let block = index.checked_div(self.hashes_per_block)?;
        let slot = index.checked_rem(self.hashes_per_block)?;
        let stride = u64::try_from(self.digest_stride).ok()?;
        l.offset
            .checked_add(block.checked_mul(self.hash_block_size)?)?
            .checked_add(slot.checked_mul(stride)?)
    }
}

/// Hashes blocks with one algorithm, format and salt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockHasher<'a> {
    alg: HashAlgorithm,
    format: HashFormat,
    salt: &'a [u8],
}

impl<'a> BlockHasher<'a> {
    pub(crate) fn new(params: &'a VerityParams) -> Self {
        BlockHasher {
            alg: params.hash,
            format: params.format,
            salt: params.salt.as_bytes(),
        }
    }

    pub(crate) fn digest_size(&self) -> usize {
        self.alg.digest_size()
    }

    /// Hashes each `block_size`-byte block of `data` into the first `digest_size` bytes of
    /// consecutive `stride`-byte slots of `out`; the rest of each slot is left untouched.
    pub(crate) fn hash_blocks(
        &self,
        data: &[u8],
        block_size: usize,
        out: &mut [u8],
        stride: usize,
    ) {
        match self.alg {
            HashAlgorithm::Sha1 => self.run::<sha1::Sha1>(data, block_size, out, stride),
            HashAlgorithm::Sha224 => self.run::<sha2::Sha224>(data, block_size, out, stride),
            HashAlgorithm::Sha256 => self.run::<sha2::Sha256>(data, block_size, out, stride),
            HashAlgorithm::Sha384 => self.run::<sha2::Sha384>(data, block_size, out, stride),
            HashAlgorithm::Sha512 => self.run::<sha2::Sha512>(data, block_size, out, stride),
        }
    }

    fn run<D: Digest + Clone>(
        &self,
        data: &[u8],
        block_size: usize,
        out: &mut [u8],
        stride: usize,
    ) {
        // V1 hashes salt ‖ block: absorb the salt once and clone the state for every block.
        let mut prefix = D::new();
        if self.format == HashFormat::V1 {
            prefix.update(self.salt);
        }
        for (block, slot) in data
            .chunks_exact(block_size)
            .zip(out.chunks_exact_mut(stride))
        {
            let mut h = prefix.clone();
            h.update(block);
            if self.format == HashFormat::V0 {
                h.update(self.salt);
            }
            let digest = h.finalize();
            if let Some(dst) = slot.get_mut(..digest.len()) {
                dst.copy_from_slice(&digest);
            }
        }
    }

    /// The digest of one block, as a root hash.
    pub(crate) fn hash_one(&self, block: &[u8]) -> Result<RootHash, Error> {
        let mut out = [0u8; MAX_DIGEST_SIZE];
        let size = self.digest_size();
        self.hash_blocks(block, block.len().max(1), &mut out, size);
        RootHash::from_bytes(out.get(..size).ok_or(Error::SizeOverflow)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Salt;

    fn layout(p: &VerityParams, blocks: u64, off: u64, sb: bool) -> TreeLayout {
        TreeLayout::new(p, blocks, off, sb).unwrap()
    }

    #[test]
    fn geometry_sha256_4k() {
        let p = VerityParams::default();
        let l = layout(&p, 1, 0, false);
        assert!(l.levels.is_empty());
        assert_eq!(l.tree_end(), 0);
        let l = layout(&p, 2, 0, false);
        assert_eq!(
            l.levels,
            vec![Level {
                offset: 0,
                blocks: 1
            }]
        );
        assert_eq!(l.hashes_per_block, 128);
        let l = layout(&p, 128, 0, false);
        assert_eq!(l.levels.len(), 1);
        let l = layout(&p, 129, 0, false);
        // Level 1 (top, 1 block) first, then level 0 (2 blocks).
        assert_eq!(
            l.levels,
            vec![
                Level {
                    offset: 4096,
                    blocks: 2
                },
                Level {
                    offset: 0,
                    blocks: 1
                }
            ]
        );
        assert_eq!(l.tree_end(), 3 * 4096);
        assert_eq!(l.hash_blocks(), 3);
        // 1 GiB: 262144 blocks -> 2048 -> 16 -> 1.
        let l = layout(&p, 262_144, 0, false);
        let sizes: Vec<u64> = l.levels.iter().map(|l| l.blocks).collect();
        assert_eq!(sizes, vec![2048, 16, 1]);
    }

    #[test]
    fn geometry_offsets() {
        let p = VerityParams::default();
        // Superblock at 512: tree at the next 4096 boundary after 1024.
        let l = layout(&p, 2, 512, true);
        assert_eq!(l.superblock_offset, Some(512));
        assert_eq!(l.tree_offset, 4096);
        // Superblock at 4096: tree at 8192.
        assert_eq!(layout(&p, 2, 4096, true).tree_offset, 8192);
        // hcsshim's layer layout: superblock right after the data, table hash start = blocks + 1.
        assert_eq!(layout(&p, 1000, 1000 * 4096, true).hash_start_block(), 1001);
        // No superblock, unaligned offset: rounded down, as libcryptsetup does.
        assert_eq!(layout(&p, 2, 1024, false).tree_offset, 0);
        assert!(matches!(
            TreeLayout::new(&p, 2, 100, false),
            Err(Error::InvalidHashOffset(100))
        ));
        assert!(matches!(
            TreeLayout::new(&p, 0, 0, false),
            Err(Error::NoDataBlocks { .. })
        ));
    }

    #[test]
    fn geometry_strides() {
        let mut p = VerityParams {
            hash: HashAlgorithm::Sha1,
            ..VerityParams::default()
        };
        let l = layout(&p, 2, 0, false);
        assert_eq!((l.hashes_per_block, l.digest_stride), (128, 32));
        p.format = HashFormat::V0;
        let l = layout(&p, 2, 0, false);
        assert_eq!((l.hashes_per_block, l.digest_stride), (128, 20));
        p.hash = HashAlgorithm::Sha384;
        p.hash_block_size = 512;
        p.format = HashFormat::V1;
        let l = layout(&p, 2, 0, false);
        assert_eq!((l.hashes_per_block, l.digest_stride), (8, 64));
    }

    #[test]
    fn salt_position() {
        let block = [0x5au8; 512];
        let salt = [1u8, 2, 3];
        let mut p = VerityParams {
            data_block_size: 512,
            salt: Salt::new(&salt).unwrap(),
            ..VerityParams::default()
        };
        let v1 = BlockHasher::new(&p).hash_one(&block).unwrap();
        let mut h = sha2::Sha256::new();
        h.update(salt);
        h.update(block);
        assert_eq!(v1.as_bytes(), h.finalize().as_slice());
        p.format = HashFormat::V0;
        let v0 = BlockHasher::new(&p).hash_one(&block).unwrap();
        let mut h = sha2::Sha256::new();
        h.update(block);
        h.update(salt);
        assert_eq!(v0.as_bytes(), h.finalize().as_slice());
    }
}
