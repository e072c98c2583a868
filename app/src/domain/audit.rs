//! The activity log's hash chain. Each entry's hash covers its content and the previous
//! entry's hash, so changing, removing or reordering any stored entry breaks every hash
//! after it, and verification says where.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash that precedes the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What an entry records. Times are UTC milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EntryContent {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub client_ip: String,
    pub action: String,
    pub vm: String,
    pub ports: String,
    pub source: String,
    pub justification: String,
    pub result: String,
    pub detail: String,
}

/// SHA-256 over an unambiguous encoding (a JSON array) of the previous hash and the
/// content, as lowercase hex.
pub fn entry_hash(prev_hash: &str, c: &EntryContent) -> String {
    let encoded = serde_json::to_string(&(
        prev_hash,
        c.seq,
        c.at,
        &c.actor,
        &c.client_ip,
        &c.action,
        &c.vm,
        &c.ports,
        &c.source,
        &c.justification,
        &c.result,
        &c.detail,
    ))
    .unwrap_or_default();
    let digest = Sha256::digest(encoded.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainStatus {
    Verified { entries: i64 },
    Broken { at_seq: i64, reason: String },
}

/// Checks entries in sequence order, each as (content, stored prev_hash, stored hash).
pub fn verify<'a>(
    entries: impl IntoIterator<Item = (&'a EntryContent, &'a str, &'a str)>,
) -> ChainStatus {
    let mut expected_prev = GENESIS.to_owned();
    let mut count = 0;
    for (expected_seq, (content, prev, hash)) in (1..).zip(entries) {
        if content.seq != expected_seq {
            return ChainStatus::Broken {
                at_seq: content.seq,
                reason: format!("expected entry {expected_seq}"),
            };
        }
        if prev != expected_prev {
            return ChainStatus::Broken {
                at_seq: content.seq,
                reason: "does not follow the previous entry".into(),
            };
        }
        if entry_hash(prev, content) != hash {
            return ChainStatus::Broken {
                at_seq: content.seq,
                reason: "content does not match its hash".into(),
            };
        }
        expected_prev = hash.to_owned();
        count += 1;
    }
    ChainStatus::Verified { entries: count }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<(EntryContent, String, String)> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let c = EntryContent {
                    seq,
                    at: seq * 1000,
                    actor: "alice".into(),
                    action: "request".into(),
                    ..Default::default()
                };
                let h = entry_hash(&prev, &c);
                let e = (c, prev.clone(), h.clone());
                prev = h;
                e
            })
            .collect()
    }

    fn check(entries: &[(EntryContent, String, String)]) -> ChainStatus {
        verify(entries.iter().map(|(c, p, h)| (c, p.as_str(), h.as_str())))
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(check(&chain(5)), ChainStatus::Verified { entries: 5 });
        assert_eq!(check(&[]), ChainStatus::Verified { entries: 0 });
    }

    #[test]
    fn any_tampering_is_located() {
        let mut edited = chain(5);
        edited[2].0.actor = "mallory".into();
        assert!(matches!(
            check(&edited),
            ChainStatus::Broken { at_seq: 3, .. }
        ));

        let mut removed = chain(5);
        removed.remove(1);
        assert!(matches!(
            check(&removed),
            ChainStatus::Broken { at_seq: 3, .. }
        ));

        let mut rehashed = chain(5);
        rehashed[3].0.result = "denied".into();
        rehashed[3].2 = entry_hash(&rehashed[3].1, &rehashed[3].0);
        assert!(
            matches!(check(&rehashed), ChainStatus::Broken { at_seq: 5, .. }),
            "re-hashing one entry breaks the next"
        );
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = EntryContent {
            actor: "ab".into(),
            action: "c".into(),
            ..Default::default()
        };
        let b = EntryContent {
            actor: "a".into(),
            action: "bc".into(),
            ..Default::default()
        };
        assert_ne!(entry_hash(GENESIS, &a), entry_hash(GENESIS, &b));
    }
}
