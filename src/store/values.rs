//! Stored values read back: 32-byte hex hashes and non-negative block
//! numbers, a stored row that breaks them being [`StoreError::Corrupt`].

use alloy::primitives::B256;

use super::StoreError;
use crate::domain::BlockRef;

/// A stored block number and hash.
pub(super) fn block_ref(number: i64, hash: String) -> Result<BlockRef, StoreError> {
    Ok(BlockRef {
        number: to_u64(number)?,
        hash: parse_b256(&hash)?,
    })
}

/// A stored 32-byte hex value.
pub(crate) fn parse_b256(text: &str) -> Result<B256, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("not a 32-byte hex value: {text:?}")))
}

/// A stored block number (never negative).
pub(crate) fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative block number {value}")))
}
