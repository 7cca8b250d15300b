//! Hash-tree parameters: algorithm, block sizes, salt, format, and the root hash type.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Smallest data or hash block size `veritysetup` accepts.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Largest data or hash block size `veritysetup` accepts (512 KiB). Sizes above the page size
/// can be formatted and verified in userspace, but the kernel refuses to activate them.
pub const MAX_BLOCK_SIZE: u32 = 512 * 1024;
/// Largest salt the on-disk superblock (and libcryptsetup) can hold.
pub const MAX_SALT_SIZE: usize = 256;
/// Largest digest of any supported algorithm (SHA-512).
pub const MAX_DIGEST_SIZE: usize = 64;

/// Hash algorithm of the tree. Names are the kernel crypto API / `veritysetup --hash` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-1 (20-byte digests).
    Sha1,
    /// SHA-224 (28-byte digests).
    Sha224,
    /// SHA-256 (32-byte digests), charter's and veritysetup's default.
    #[default]
    Sha256,
    /// SHA-384 (48-byte digests).
    Sha384,
    /// SHA-512 (64-byte digests).
    Sha512,
}

impl HashAlgorithm {
    /// Every supported algorithm.
    pub const ALL: [HashAlgorithm; 5] = [
        HashAlgorithm::Sha1,
        HashAlgorithm::Sha224,
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha384,
        HashAlgorithm::Sha512,
    ];

    /// The name used by `veritysetup --hash` and stored in the superblock.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "sha1",
            HashAlgorithm::Sha224 => "sha224",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_size(self) -> usize {
        match self {
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Sha224 => 28,
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha384 => 48,
            HashAlgorithm::Sha512 => 64,
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = Error;

    /// Parses a name as `veritysetup` spells it (lowercase).
    fn from_str(s: &str) -> Result<Self, Error> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| Error::UnsupportedHashAlgorithm(s.to_owned()))
    }
}

/// Hash format ("hash type" in the superblock, `veritysetup --format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashFormat {
    /// Type 0, the original Chrome OS format: digest = H(block ‖ salt); digests packed without
    /// per-slot padding.
    V0,
    /// Type 1, the normal format: digest = H(salt ‖ block); each digest slot padded with zeros
    /// to the next power of two.
    #[default]
    V1,
}

impl HashFormat {
    /// The superblock `hash_type` value (and `veritysetup --format` argument).
    pub fn hash_type(self) -> u32 {
        match self {
            HashFormat::V0 => 0,
            HashFormat::V1 => 1,
        }
    }

    /// The format for a superblock `hash_type` value.
    pub fn from_hash_type(t: u32) -> Result<Self, Error> {
        match t {
            0 => Ok(HashFormat::V0),
            1 => Ok(HashFormat::V1),
            other => Err(Error::UnsupportedHashType(other)),
        }
    }
}

/// A salt of at most [`MAX_SALT_SIZE`] bytes (may be empty: `veritysetup --salt=-`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Salt(Vec<u8>);

impl Salt {
    /// A salt from raw bytes.
    pub fn new(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_SALT_SIZE {
            return Err(Error::SaltTooLong(bytes.len()));
        }
        Ok(Salt(bytes.to_vec()))
    }

    /// The empty salt (`--salt=-`).
    pub fn none() -> Self {
        Salt(Vec::new())
    }

    /// The salt bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Salt length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the salt is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Default for Salt {
    /// 32 zero bytes: charter's layer default (D4), as hcsshim uses.
    fn default() -> Self {
        Salt(vec![0; 32])
    }
}

impl fmt::Debug for Salt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salt({self})")
    }
}

impl fmt::Display for Salt {
    /// Lowercase hex, or `-` for the empty salt (as `veritysetup` prints and parses it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&hex::encode(&self.0))
        }
    }
}

impl FromStr for Salt {
    type Err = Error;

    /// Hex (either case), or `-` or the empty string for no salt.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s == "-" || s.is_empty() {
            return Ok(Salt::none());
        }
        if s.len() > MAX_SALT_SIZE.saturating_mul(2) {
            return Err(Error::SaltTooLong(s.len() / 2));
        }
        let bytes = hex::decode(s).map_err(|_| Error::InvalidSaltHex)?;
        Salt::new(&bytes)
    }
}

/// Everything that determines the tree bytes and the root hash, apart from the data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VerityParams {
    /// Hash algorithm.
    pub hash: HashAlgorithm,
    /// Data block size in bytes (power of two, 512..=524288).
    pub data_block_size: u32,
    /// Hash block size in bytes (power of two, 512..=524288).
    pub hash_block_size: u32,
    /// Salt.
    pub salt: Salt,
    /// Hash format (type 0 or 1).
    pub format: HashFormat,
}

impl Default for VerityParams {
    /// sha256, 4096-byte blocks, 32 zero bytes of salt, format 1 (DESIGN.md D4).
    fn default() -> Self {
        VerityParams {
            hash: HashAlgorithm::Sha256,
            data_block_size: 4096,
            hash_block_size: 4096,
            salt: Salt::default(),
            format: HashFormat::V1,
        }
    }
}

/// Whether `size` is a block size `veritysetup` accepts.
pub fn block_size_ok(size: u32) -> bool {
    (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&size) && size.is_power_of_two()
}

impl VerityParams {
    /// Checks the block sizes as libcryptsetup does (`VERITY_BLOCK_SIZE_OK`).
    pub fn validate(&self) -> Result<(), Error> {
        if !block_size_ok(self.data_block_size) {
            return Err(Error::InvalidDataBlockSize(self.data_block_size));
        }
        if !block_size_ok(self.hash_block_size) {
            return Err(Error::InvalidHashBlockSize(self.hash_block_size));
        }
        Ok(())
    }
}

/// A root hash: the digest of the top hash block (or of the only data block).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootHash {
    bytes: [u8; MAX_DIGEST_SIZE],
    len: u8,
}

impl RootHash {
    /// A root hash from its bytes; the length must be a supported digest size.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if !HashAlgorithm::ALL
            .iter()
            .any(|a| a.digest_size() == bytes.len())
        {
            return Err(Error::InvalidRootHashLength(bytes.len()));
        }
        let mut out = [0u8; MAX_DIGEST_SIZE];
        let dst = out
            .get_mut(..bytes.len())
            .ok_or(Error::InvalidRootHashLength(bytes.len()))?;
        dst.copy_from_slice(bytes);
        let len =
            u8::try_from(bytes.len()).map_err(|_| Error::InvalidRootHashLength(bytes.len()))?;
        Ok(RootHash { bytes: out, len })
    }

    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or(&self.bytes)
    }

    /// Digest length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a root hash has at least 20 bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl fmt::Display for RootHash {
    /// Lowercase hex, as `veritysetup` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({self})")
    }
}

impl FromStr for RootHash {
    type Err = Error;

    /// Hex of a supported digest length (either case).
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() > MAX_DIGEST_SIZE.saturating_mul(2) || !s.len().is_multiple_of(2) {
            return Err(Error::InvalidRootHashLength(s.len() / 2));
        }
        let bytes = hex::decode(s).map_err(|_| Error::InvalidRootHashHex)?;
        RootHash::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design_d4() {
        let p = VerityParams::default();
        assert_eq!(p.hash, HashAlgorithm::Sha256);
        assert_eq!((p.data_block_size, p.hash_block_size), (4096, 4096));
        assert_eq!(p.salt.as_bytes(), &[0u8; 32]);
        assert_eq!(p.format, HashFormat::V1);
        p.validate().unwrap();
    }

    #[test]
    fn block_sizes() {
        for ok in [512, 1024, 4096, 65536, 524288] {
            assert!(block_size_ok(ok), "{ok}");
        }
        for bad in [0, 1, 256, 511, 768, 4095, 1 << 20, u32::MAX] {
            assert!(!block_size_ok(bad), "{bad}");
        }
        let p = VerityParams {
            hash_block_size: 768,
            ..VerityParams::default()
        };
        assert!(matches!(
            p.validate(),
            Err(Error::InvalidHashBlockSize(768))
        ));
    }

    #[test]
    fn salt_parsing() {
        assert!(Salt::from_str("-").unwrap().is_empty());
        assert!(Salt::from_str("").unwrap().is_empty());
        assert_eq!(Salt::from_str("ABcd").unwrap().as_bytes(), &[0xab, 0xcd]);
        assert_eq!(Salt::from_str("abcd").unwrap().to_string(), "abcd");
        assert_eq!(Salt::none().to_string(), "-");
        assert!(matches!(Salt::from_str("abc"), Err(Error::InvalidSaltHex)));
        assert!(matches!(Salt::from_str("zz"), Err(Error::InvalidSaltHex)));
        assert!(Salt::new(&[7; 256]).is_ok());
        assert!(matches!(Salt::new(&[7; 257]), Err(Error::SaltTooLong(257))));
        assert!(matches!(
            Salt::from_str(&"00".repeat(257)),
            Err(Error::SaltTooLong(257))
        ));
    }

    #[test]
    fn root_hash_parsing() {
        let hex = "4d11f0d31103f61fb5c8a15b1f53fd491ca5e8293c68152038afce9aa5759221";
        let r: RootHash = hex.parse().unwrap();
        assert_eq!(r.len(), 32);
        assert_eq!(r.to_string(), hex);
        assert_eq!(hex.to_uppercase().parse::<RootHash>().unwrap(), r);
        assert!(matches!(
            "abcd".parse::<RootHash>(),
            Err(Error::InvalidRootHashLength(2))
        ));
        assert!(matches!(
            "abc".parse::<RootHash>(),
            Err(Error::InvalidRootHashLength(_))
        ));
        assert!(matches!(
            "g".repeat(64).parse::<RootHash>(),
            Err(Error::InvalidRootHashHex)
        ));
        for alg in HashAlgorithm::ALL {
            let r = RootHash::from_bytes(&vec![1; alg.digest_size()]).unwrap();
            assert_eq!(r.to_string().parse::<RootHash>().unwrap(), r);
            assert_eq!(alg.name().parse::<HashAlgorithm>().unwrap(), alg);
        }
        assert!(matches!(
            "md5".parse::<HashAlgorithm>(),
            Err(Error::UnsupportedHashAlgorithm(_))
        ));
    }
}
