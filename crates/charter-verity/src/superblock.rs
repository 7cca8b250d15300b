//! The on-disk verity superblock (format 1), as libcryptsetup's `struct verity_sb`.
//!
//! ```text
//! offset size field
//!      0    8 signature "verity\0\0"
//!      8    4 version (1)
//!     12    4 hash_type (0 Chrome OS, 1 normal)
//!     16   16 uuid
//!     32   32 algorithm, NUL-terminated
//!     64    4 data_block_size
//!     68    4 hash_block_size
//!     72    8 data_blocks
//!     80    2 salt_size
//!     82    6 padding
//!     88  256 salt
//!    344  168 padding
//! ```
//! All integers little-endian. [`Superblock::decode`] is stricter than libcryptsetup: besides
//! what it checks (signature, version, hash type, block sizes, salt size, known algorithm) it
//! requires every byte `veritysetup` writes as zero (padding, unused salt, the algorithm field
//! after its NUL) to be zero, and at least one data block.

use crate::params::{block_size_ok, HashAlgorithm, HashFormat, Salt, VerityParams};
use crate::Error;

/// Size of the on-disk superblock.
pub const SUPERBLOCK_SIZE: usize = 512;

const SIGNATURE: &[u8; 8] = b"verity\0\0";
const ALGORITHM: std::ops::Range<usize> = 32..64;
const SALT: std::ops::Range<usize> = 88..344;
const PAD1: std::ops::Range<usize> = 82..88;
const PAD2: std::ops::Range<usize> = 344..512;

/// A decoded verity superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Hash format ("hash type").
    pub format: HashFormat,
    /// UUID of the hash device (raw bytes, as `uuid_parse` stores them).
    pub uuid: [u8; 16],
    /// Hash algorithm.
    pub hash: HashAlgorithm,
    /// Data block size in bytes.
    pub data_block_size: u32,
    /// Hash block size in bytes.
    pub hash_block_size: u32,
    /// Number of data blocks.
    pub data_blocks: u64,
    /// Salt.
    pub salt: Salt,
}

impl Superblock {
    /// The superblock `veritysetup format --uuid=UUID` writes for these parameters.
    pub fn new(params: &VerityParams, data_blocks: u64, uuid: [u8; 16]) -> Superblock {
        Superblock {
            format: params.format,
            uuid,
            hash: params.hash,
            data_block_size: params.data_block_size,
            hash_block_size: params.hash_block_size,
            data_blocks,
            salt: params.salt.clone(),
        }
    }

    /// The tree parameters this superblock describes.
    pub fn params(&self) -> VerityParams {
        VerityParams {
            hash: self.hash,
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            salt: self.salt.clone(),
            format: self.format,
        }
    }

    /// Reads and decodes the superblock at `offset` (a multiple of 512) of `file`.
    pub fn read_at(file: &std::fs::File, offset: u64) -> Result<Superblock, Error> {
        if !offset.is_multiple_of(512) {
            return Err(Error::InvalidHashOffset(offset));
        }
        let mut b = [0u8; SUPERBLOCK_SIZE];
        crate::io::read_exact_at(file, &mut b, offset, "hash device")?;
        Superblock::decode(&b)
    }

    /// The 512 on-disk bytes.
    pub fn encode(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut b = [0u8; SUPERBLOCK_SIZE];
        let salt = self.salt.as_bytes();
        let salt_len = u16::try_from(salt.len()).unwrap_or(u16::MAX);
        let fields: [(usize, &[u8]); 9] = [
            (0, SIGNATURE),
            (8, &1u32.to_le_bytes()),
            (12, &self.format.hash_type().to_le_bytes()),
            (16, &self.uuid),
            (ALGORITHM.start, self.hash.name().as_bytes()),
            (64, &self.data_block_size.to_le_bytes()),
            (68, &self.hash_block_size.to_le_bytes()),
            (72, &self.data_blocks.to_le_bytes()),
            (80, &salt_len.to_le_bytes()),
        ];
        for (at, bytes) in fields.into_iter().chain([(SALT.start, salt)]) {
            if let Some(dst) = b.get_mut(at..at.saturating_add(bytes.len())) {
                dst.copy_from_slice(bytes);
            }
        }
        b
    }

    /// Parses and checks the first 512 bytes of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Superblock, Error> {
        let b: &[u8; SUPERBLOCK_SIZE] = bytes
            .get(..SUPERBLOCK_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or(Error::SuperblockTooShort(bytes.len()))?;
        let (sig, rest) = b.split_at(8);
        if sig != SIGNATURE {
            return Err(Error::BadSignature);
        }
        let u32_at = |at: usize| -> u32 {
            let mut v = [0u8; 4];
            if let Some(s) = rest.get(at.saturating_sub(8)..at.saturating_sub(4)) {
                v.copy_from_slice(s);
            }
            u32::from_le_bytes(v)
        };
        let version = u32_at(8);
        if version != 1 {
            return Err(Error::UnsupportedSuperblockVersion(version));
        }
        let format = HashFormat::from_hash_type(u32_at(12))?;
        let data_block_size = u32_at(64);
        if !block_size_ok(data_block_size) {
            return Err(Error::InvalidDataBlockSize(data_block_size));
        }
        let hash_block_size = u32_at(68);
        if !block_size_ok(hash_block_size) {
            return Err(Error::InvalidHashBlockSize(hash_block_size));
        }
        let mut db = [0u8; 8];
        db.copy_from_slice(b.get(72..80).ok_or(Error::SuperblockTooShort(0))?);
        let data_blocks = u64::from_le_bytes(db);
        let mut ss = [0u8; 2];
        ss.copy_from_slice(b.get(80..82).ok_or(Error::SuperblockTooShort(0))?);
        let salt_size = usize::from(u16::from_le_bytes(ss));
        if salt_size > SALT.len() {
            return Err(Error::SaltTooLong(salt_size));
        }

        let alg_field = b.get(ALGORITHM).ok_or(Error::BadAlgorithmField)?;
        let nul = alg_field
            .iter()
            .position(|&c| c == 0)
            .ok_or(Error::BadAlgorithmField)?;
        let (name, tail) = alg_field.split_at(nul);
        let name = std::str::from_utf8(name).map_err(|_| Error::BadAlgorithmField)?;
        let hash: HashAlgorithm = name.parse()?;
        check_zero(tail, ALGORITHM.start.saturating_add(nul))?;
        check_zero(b.get(PAD1).unwrap_or_default(), PAD1.start)?;
        let salt_field = b.get(SALT).unwrap_or_default();
        let (salt, unused) = salt_field.split_at(salt_size.min(salt_field.len()));
        check_zero(unused, SALT.start.saturating_add(salt_size))?;
        check_zero(b.get(PAD2).unwrap_or_default(), PAD2.start)?;

        if data_blocks == 0 {
            return Err(Error::ZeroDataBlocks);
        }
        if data_blocks
            .checked_mul(u64::from(data_block_size))
            .is_none()
        {
            return Err(Error::SizeOverflow);
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(b.get(16..32).ok_or(Error::SuperblockTooShort(0))?);
        Ok(Superblock {
            format,
            uuid,
            hash,
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: Salt::new(salt)?,
        })
    }
}

fn check_zero(bytes: &[u8], base: usize) -> Result<(), Error> {
    match bytes.iter().position(|&c| c != 0) {
        None => Ok(()),
        Some(i) => Err(Error::NonZeroReserved(base.saturating_add(i))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock written by `veritysetup format --salt=bcf5..91 --uuid=336450e6-...` over a
    /// two-block data file (captured on this machine kind, cryptsetup 2.6.1).
    fn sample() -> Superblock {
        let salt = hex::decode("bcf5162068fe6759f4f1e1a8d658436bec166ea5e76559c1dd84c5afbd518a91")
            .unwrap();
        let uuid: [u8; 16] = hex::decode("336450e630e1474d982da9b1f9e22796")
            .unwrap()
            .try_into()
            .unwrap();
        Superblock::new(
            &VerityParams {
                salt: Salt::new(&salt).unwrap(),
                ..VerityParams::default()
            },
            2,
            uuid,
        )
    }

    #[test]
    fn layout_matches_veritysetup() {
        let b = sample().encode();
        assert_eq!(&b[..16], b"verity\0\0\x01\0\0\0\x01\0\0\0");
        assert_eq!(&b[32..40], b"sha256\0\0");
        assert_eq!(
            &b[64..88],
            &hex::decode("001000000010000002000000000000002000000000000000").unwrap()[..]
        );
        assert_eq!(b[88], 0xbc);
        assert!(b[120..].iter().all(|&c| c == 0));
    }

    #[test]
    fn round_trip() {
        let sb = sample();
        assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
        let mut long = sb.encode().to_vec();
        long.extend_from_slice(&[0xff; 3584]);
        assert_eq!(Superblock::decode(&long).unwrap(), sb);
        let sb = Superblock {
            salt: Salt::new(&[9; 256]).unwrap(),
            format: HashFormat::V0,
            hash: HashAlgorithm::Sha1,
            ..sample()
        };
        assert_eq!(Superblock::decode(&sb.encode()).unwrap(), sb);
        assert_eq!(sb.params().hash, HashAlgorithm::Sha1);
    }

    fn mutate(at: usize, bytes: &[u8]) -> Result<Superblock, Error> {
        let mut b = sample().encode();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        Superblock::decode(&b)
    }

    #[test]
    fn malformed() {
        let ok = sample().encode();
        assert!(matches!(
            Superblock::decode(&ok[..511]),
            Err(Error::SuperblockTooShort(511))
        ));
        assert!(matches!(mutate(0, b"Verity"), Err(Error::BadSignature)));
        assert!(matches!(mutate(6, b"x"), Err(Error::BadSignature)));
        assert!(matches!(
            mutate(8, &2u32.to_le_bytes()),
            Err(Error::UnsupportedSuperblockVersion(2))
        ));
        assert!(matches!(
            mutate(12, &2u32.to_le_bytes()),
            Err(Error::UnsupportedHashType(2))
        ));
        assert!(matches!(
            mutate(64, &768u32.to_le_bytes()),
            Err(Error::InvalidDataBlockSize(768))
        ));
        assert!(matches!(
            mutate(68, &(1u32 << 20).to_le_bytes()),
            Err(Error::InvalidHashBlockSize(_))
        ));
        assert!(matches!(
            mutate(68, &256u32.to_le_bytes()),
            Err(Error::InvalidHashBlockSize(256))
        ));
        assert!(matches!(
            mutate(72, &0u64.to_le_bytes()),
            Err(Error::ZeroDataBlocks)
        ));
        assert!(matches!(
            mutate(72, &u64::MAX.to_le_bytes()),
            Err(Error::SizeOverflow)
        ));
        assert!(matches!(
            mutate(80, &257u16.to_le_bytes()),
            Err(Error::SaltTooLong(257))
        ));
        assert!(
            matches!(mutate(32, b"md5\0"), Err(Error::UnsupportedHashAlgorithm(n)) if n == "md5")
        );
        assert!(matches!(
            mutate(32, &[b'a'; 32]),
            Err(Error::BadAlgorithmField)
        ));
        assert!(matches!(
            mutate(32, &[0xff, 0]),
            Err(Error::BadAlgorithmField)
        ));
        assert!(matches!(mutate(39, b"x"), Err(Error::NonZeroReserved(39))));
        assert!(matches!(mutate(83, b"x"), Err(Error::NonZeroReserved(83))));
        // Salt is 32 bytes: byte 88 + 32 is unused and must be zero.
        assert!(matches!(
            mutate(120, b"x"),
            Err(Error::NonZeroReserved(120))
        ));
        assert!(matches!(
            mutate(511, b"x"),
            Err(Error::NonZeroReserved(511))
        ));
    }
}
