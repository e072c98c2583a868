//! The activity log's hash chain. Each entry's hash covers its content and the previous
//! entry's hash, so changing, removing or reordering any stored entry breaks every hash
//! after it, and verification says where.
//!
//! A chain alone does not stop someone who can write the database: they can change an
//! entry and compute every later hash again, or delete the newest entries. So each entry
//! also carries an HMAC of its hash under a key that is not in the database, and
//! verification records signed checkpoints (position and hash) whose newest one is also
//! kept outside the database (a file and the server log): a recomputed chain fails the
//! HMACs, and a shortened one falls behind the checkpoint kept outside.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The key the log's HMACs are made with: 32 bytes or more, kept outside the database.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    pub const MIN_BYTES: usize = 32;

    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "{} bytes; at least {} are needed (`openssl rand -base64 32`)",
                bytes.len(),
                Self::MIN_BYTES
            ));
        }
        Ok(AuditKey(bytes))
    }

    fn mac(&self, message: &str) -> String {
        // HMAC accepts keys of any length; `new` guarantees at least 32 bytes.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The HMAC stored with an entry: of its hash, which already covers its content and
    /// position.
    pub fn entry_mac(&self, hash: &str) -> String {
        self.mac(&format!("entry:{hash}"))
    }

    /// The HMAC of a checkpoint: the chain was verified up to entry `seq`, ending in `hash`.
    pub fn checkpoint_mac(&self, seq: i64, hash: &str) -> String {
        self.mac(&format!("checkpoint:{seq}:{hash}"))
    }

    /// Vouches for the legacy boundary: entries up to `seq` may carry no HMAC. Without it,
    /// someone who can write the database would strip every HMAC and move the boundary to
    /// the end.
    pub fn legacy_mac(&self, seq: i64) -> String {
        self.mac(&format!("legacy:{seq}"))
    }
}

/// A verified position of the chain: entry `seq` has hash `hash` (0 and [`GENESIS`] before
/// the first entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
}

impl Checkpoint {
    pub fn genesis() -> Self {
        Checkpoint {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }
}

/// One stored entry as verification reads it.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub content: &'a EntryContent,
    pub prev_hash: &'a str,
    pub hash: &'a str,
    pub mac: &'a str,
}

/// Why a segment does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub at_seq: i64,
    pub reason: String,
}

/// Verifies entries that follow `from`, in order: consecutive positions, each linked to
/// the previous hash, each hash matching its content, each HMAC matching (entries up to
/// `legacy_until`, written before the log had a key, may have none: a signed checkpoint
/// covers them). Returns the new position.
pub fn verify_segment<'a>(
    from: &Checkpoint,
    entries: impl IntoIterator<Item = Stored<'a>>,
    key: &AuditKey,
    legacy_until: i64,
) -> Result<Checkpoint, Break> {
    let mut at = from.clone();
    for e in entries {
        let seq = e.content.seq;
        let broken = |reason: &str| Break {
            at_seq: seq,
            reason: reason.to_owned(),
        };
        if seq != at.seq + 1 {
            return Err(Break {
                at_seq: at.seq + 1,
                reason: format!("entry {} is missing (found entry {seq})", at.seq + 1),
            });
        }
        if e.prev_hash != at.hash {
            return Err(broken("does not follow the previous entry"));
        }
        if entry_hash(e.prev_hash, e.content) != e.hash {
            return Err(broken("content does not match its hash"));
        }
        let mac_ok = if e.mac.is_empty() {
            seq <= legacy_until
        } else {
            super::secret::hashes_match(e.mac, &key.entry_mac(e.hash))
        };
        if !mac_ok {
            return Err(broken(
                "its HMAC does not match: written or rewritten without the log's key",
            ));
        }
        at = Checkpoint {
            seq,
            hash: e.hash.to_owned(),
        };
    }
    Ok(at)
}

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

    fn key() -> AuditKey {
        AuditKey::new(vec![7; 32]).unwrap()
    }

    fn segment(
        entries: &[(EntryContent, String, String)],
        macs: &[String],
        legacy: i64,
    ) -> Result<Checkpoint, Break> {
        verify_segment(
            &Checkpoint::genesis(),
            entries.iter().zip(macs).map(|((c, p, h), m)| Stored {
                content: c,
                prev_hash: p,
                hash: h,
                mac: m,
            }),
            &key(),
            legacy,
        )
    }

    #[test]
    fn a_recomputed_chain_fails_its_hmacs_and_gaps_are_found() {
        let entries = chain(4);
        let macs: Vec<String> = entries.iter().map(|e| key().entry_mac(&e.2)).collect();
        assert_eq!(
            segment(&entries, &macs, 0),
            Ok(Checkpoint {
                seq: 4,
                hash: entries[3].2.clone()
            })
        );
        // Someone with database access rewrites entry 2 and recomputes the chain: every
        // hash links up, but they cannot make the HMACs.
        let mut forged = entries.clone();
        forged[1].0.actor = "mallory".into();
        for i in 1..forged.len() {
            let prev = forged[i - 1].2.clone();
            forged[i].1 = prev.clone();
            forged[i].2 = entry_hash(&prev, &forged[i].0);
        }
        let other_key = AuditKey::new(vec![9; 32]).unwrap();
        // The untouched first entry keeps its real HMAC; the attacker signs the rest.
        let forged_macs: Vec<String> = forged
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if i == 0 {
                    macs[0].clone()
                } else {
                    other_key.entry_mac(&e.2)
                }
            })
            .collect();
        assert_eq!(segment(&forged, &forged_macs, 0).unwrap_err().at_seq, 2);
        assert_eq!(segment(&forged, &macs, 0).unwrap_err().at_seq, 2);
        // Entries without an HMAC pass only up to the legacy boundary.
        let blank = vec![String::new(); 4];
        assert!(segment(&entries, &blank, 4).is_ok());
        assert_eq!(segment(&entries, &blank, 2).unwrap_err().at_seq, 3);
        // A missing entry is named.
        let mut gap = entries.clone();
        gap.remove(2);
        let gap_macs: Vec<String> = gap.iter().map(|e| key().entry_mac(&e.2)).collect();
        let b = segment(&gap, &gap_macs, 0).unwrap_err();
        assert_eq!(b.at_seq, 3);
        assert!(b.reason.contains("missing"), "{b:?}");
        assert!(AuditKey::new(vec![1; 31]).is_err());
        assert_eq!(format!("{:?}", key()), "AuditKey(<redacted>)");
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
