//! Agent credentials: enrollment tokens and agent secrets are long random strings, so a
//! single SHA-256 is enough to store them without keeping anything usable.

use sha2::{Digest, Sha256};

pub fn hash_secret(secret: &str) -> String {
    to_hex(&Sha256::digest(secret.as_bytes()))
}

/// Lower-case hex, two digits a byte.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two hashes in time independent of where they differ.
pub fn hashes_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_are_stable_hex_and_compare_exactly() {
        let h = super::hash_secret("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::hashes_match(&h, &super::hash_secret("abc")));
        assert!(!super::hashes_match(&h, &super::hash_secret("abd")));
        assert!(!super::hashes_match(&h, "short"));
    }
}
