//! Local-account authentication: password hashing, the sign-in rate limit, and the
//! session keys that say who is signed in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString, rand_core::OsRng};

use crate::error::{AppError, AppResult};

pub const SESSION_USER_ID: &str = "user_id";
/// The user's session epoch when the session signed in; a password change or reset moves
/// the user's epoch on, and every session of an earlier epoch ends.
pub const SESSION_EPOCH: &str = "session_epoch";

fn session_error(e: tower_sessions::session::Error) -> AppError {
    tracing::error!(error = %e, "session store error");
    AppError::Internal
}

/// What one HTTP request learned of its signed-in user and that user's roles, so that a
/// page, which runs several server functions while it renders (the shell, the flash
/// message, its data), reads them from the database once rather than once per function.
/// The page gate puts a fresh one in each request's extensions; it never outlives the
/// request, and every change of the session in the request forgets it.
#[derive(Clone, Default)]
pub struct RequestUser(std::sync::Arc<Mutex<Known>>);

#[derive(Default)]
struct Known {
    user: Option<Option<crate::store::StoredUser>>,
    roles: Option<(String, Vec<crate::domain::RoleAssignment>)>,
}

impl RequestUser {
    /// The session's user: read once, then as read.
    pub async fn session_user(
        &self,
        store: &crate::store::Store,
        session: &tower_sessions::Session,
    ) -> AppResult<Option<crate::store::StoredUser>> {
        if let Some(known) = self.lock().user.clone() {
            return Ok(known);
        }
        let user = session_user(store, session).await?;
        self.lock().user = Some(user.clone());
        Ok(user)
    }

    /// The effective roles of `user_id`: read once, then as read.
    pub async fn roles(
        &self,
        store: &crate::store::Store,
        user_id: &str,
    ) -> AppResult<Vec<crate::domain::RoleAssignment>> {
        if let Some((id, roles)) = &self.lock().roles
            && id == user_id
        {
            return Ok(roles.clone());
        }
        let roles = crate::services::sso::effective_roles(store, user_id).await?;
        self.lock().roles = Some((user_id.to_owned(), roles.clone()));
        Ok(roles)
    }

    /// After the session changed (signed in, out, or ended): read again when asked.
    pub fn forget(&self) {
        *self.lock() = Known::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent value.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The user a session belongs to while the session is still valid: the user exists, is
/// enabled, and has not changed (or had reset) their password since the session began.
/// Every path that reads the session user goes through here.
pub async fn session_user(
    store: &crate::store::Store,
    session: &tower_sessions::Session,
) -> AppResult<Option<crate::store::StoredUser>> {
    let Some(id) = session
        .get::<String>(SESSION_USER_ID)
        .await
        .map_err(session_error)?
    else {
        return Ok(None);
    };
    let epoch = session
        .get::<i64>(SESSION_EPOCH)
        .await
        .map_err(session_error)?
        .unwrap_or(0);
    Ok(store
        .get_user(&id)
        .await?
        .filter(|u| !u.disabled && u.session_epoch == epoch))
}

/// Marks a session as signed in as `user` (the caller has already given it a fresh id).
pub async fn mark_signed_in(
    session: &tower_sessions::Session,
    user: &crate::store::StoredUser,
) -> AppResult<()> {
    session
        .insert(SESSION_USER_ID, &user.id)
        .await
        .map_err(session_error)?;
    session
        .insert(SESSION_EPOCH, user.session_epoch)
        .await
        .map_err(session_error)
}
/// Set at a single sign-on: where sign-out sends the browser to end the provider's session
/// too (its end-session endpoint with the ID token as hint).
pub const SESSION_END_SESSION_URL: &str = "end_session_url";

/// Argon2 is deliberately slow and takes about 19 MiB per hash: a few hundred parallel
/// sign-ins would take gigabytes. At most this many hashes run at once (one per core);
/// the others wait their turn.
static HASHING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        std::sync::Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        ))
    });

/// How long an attempt waits for its turn to hash before it is told to come back later.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(3);

/// A turn at the password hasher, or "busy" after [`HASH_QUEUE_WAIT`]. Owned, so that the
/// blocking task holds it: a sign-in whose client hangs up (or times out) mid-hash keeps
/// its turn until the hash is done, and abandoned hashes cannot pile up beyond the limit.
async fn hashing_turn(
    turns: &std::sync::Arc<tokio::sync::Semaphore>,
) -> AppResult<tokio::sync::OwnedSemaphorePermit> {
    match tokio::time::timeout(HASH_QUEUE_WAIT, turns.clone().acquire_owned()).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(AppError::Internal),
        Err(_) => {
            tracing::warn!("password hashing queue full: a sign-in was asked to retry");
            Err(AppError::Busy {
                retry_after_secs: 5,
            })
        }
    }
}

/// Argon2's working memory (19 MiB per hash), kept for reuse: at most one buffer per
/// hasher turn ever exists. Allocating and freeing it per hash made the allocator keep the
/// freed blocks and grow the process by hundreds of MiB under a burst of sign-ins.
static BUFFERS: std::sync::Mutex<Vec<Vec<argon2::Block>>> = std::sync::Mutex::new(Vec::new());

/// Runs Argon2 with a reused buffer: `out` gets the raw hash.
fn argon2_into(
    argon: &Argon2<'_>,
    block_count: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let mut blocks = BUFFERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop()
        .unwrap_or_default();
    if blocks.len() < block_count {
        blocks.resize(block_count, argon2::Block::default());
    }
    let result =
        argon.hash_password_into_with_memory(password, salt, out, &mut blocks[..block_count]);
    BUFFERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(blocks);
    result
}

/// Hashes on the blocking pool: argon2 is deliberately slow and would stall the async
/// workers that serve everyone else.
pub async fn hash_password(password: String) -> AppResult<String> {
    let turn = hashing_turn(&HASHING).await?;
    tokio::task::spawn_blocking(move || -> Result<String, String> {
        let _turn = turn;
        use argon2::password_hash::{Output, ParamsString};
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|e| e.to_string())?;
        let argon = Argon2::default();
        let params = argon.params().clone();
        let mut out = vec![
            0u8;
            params
                .output_len()
                .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN)
        ];
        argon2_into(
            &argon,
            params.block_count(),
            password.as_bytes(),
            salt_raw,
            &mut out,
        )
        .map_err(|e| e.to_string())?;
        let hash = PasswordHash {
            algorithm: argon2::Algorithm::default().ident(),
            version: Some(argon2::Version::default().into()),
            params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
        };
        Ok(hash.to_string())
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "password hashing task failed");
        AppError::Internal
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "password hashing failed");
        AppError::Internal
    })
}

/// A hash of a random password, verified against when the user does not exist so that
/// a wrong user name takes as long to refuse as a wrong password.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(uuid::Uuid::new_v4().to_string().as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Argon2 verification of `password` against a PHC string, with a reused buffer.
fn verify_with_buffer(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(algorithm), Some(expected), Some(salt)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = parsed
        .version
        .map(argon2::Version::try_from)
        .transpose()
        .ok()
        .flatten()
        .unwrap_or_default();
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    // Refuse absurd stored parameters rather than allocate for them.
    if params.block_count() > 4 * argon2::Params::DEFAULT_M_COST as usize {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    if argon2_into(&argon, params.block_count(), password, salt_raw, &mut out).is_err() {
        return false;
    }
    // `Output` compares in constant time.
    argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
}

pub async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    verify_password_taking(&HASHING, password, hash).await
}

/// [`verify_password`], taking its turn from `turns`.
async fn verify_password_taking(
    turns: &std::sync::Arc<tokio::sync::Semaphore>,
    password: String,
    hash: Option<String>,
) -> AppResult<bool> {
    let turn = hashing_turn(turns).await?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let ok = verify_with_buffer(password.as_bytes(), &hash);
        real && ok
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "password verification task failed");
        AppError::Internal
    })
}

/// Counts failed sign-ins per key (user name, and client address) in a sliding window.
/// Past the limit, further attempts are refused without checking the password until the
/// window has passed. Kept in memory: per replica, reset on restart.
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    counts: HashMap<String, (u32, Instant)>,
    pruned_at: Option<Instant>,
}

/// Keys the limiter remembers at most: a flood of made-up user names from many addresses
/// cannot grow it without bound. Beyond it, new keys are refused until old ones expire.
const MAX_LIMITER_KEYS: usize = 100_000;

/// The address key of a sign-in: one IPv6 /64 is one client (a host gets a whole /64, so
/// keying on /128 would give it unlimited guesses).
pub fn client_key(ip: std::net::IpAddr) -> String {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        std::net::IpAddr::V4(v4) => format!("ip:{v4}"),
    }
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// Err with the seconds to wait if any key is locked.
    pub fn check(&self, keys: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::locked(&mut map, keys, now, self.window, self.max_failures)
    }

    fn locked(
        failures: &mut Failures,
        keys: &[String],
        now: Instant,
        window: Duration,
        max: u32,
    ) -> Result<(), u64> {
        // Expired keys are dropped at most once a second, not at every attempt: a walk over
        // every key under the lock is what a flood would buy.
        let due = failures
            .pruned_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1));
        if due {
            failures
                .counts
                .retain(|_, (_, since)| now.duration_since(*since) < window);
            // Nearly full (a flood of names or addresses): partial counts go first, so
            // that newcomers still get in; the locks stay.
            if failures.counts.len() > MAX_LIMITER_KEYS / 10 * 9 {
                failures.counts.retain(|_, (count, _)| *count >= max);
            }
            failures.pruned_at = Some(now);
        }
        // This attempt's own keys are judged by their own window, pruned or not.
        for key in keys {
            if failures
                .counts
                .get(key)
                .is_some_and(|(_, since)| now.duration_since(*since) >= window)
            {
                failures.counts.remove(key);
            }
        }
        let map = &failures.counts;
        if map.len() + keys.len() > MAX_LIMITER_KEYS && keys.iter().any(|k| !map.contains_key(k)) {
            return Err(window.as_secs().clamp(1, 60));
        }
        for key in keys {
            if let Some((count, since)) = map.get(key)
                && *count >= max
            {
                let left = window.saturating_sub(now.duration_since(*since));
                return Err(left.as_secs().max(1));
            }
        }
        Ok(())
    }

    /// Decides and records in one step: refused (with the seconds to wait) if any key is
    /// locked, otherwise the attempt counts as a failure from now on, so that parallel
    /// guesses are counted before any of them is checked. A successful sign-in calls
    /// [`LoginLimiter::clear`].
    pub fn attempt(&self, keys: &[String]) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::locked(&mut map, keys, now, self.window, self.max_failures)?;
        for key in keys {
            map.counts.entry(key.clone()).or_insert((0, now)).0 += 1;
        }
        Ok(())
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if map.counts.len() >= MAX_LIMITER_KEYS && !map.counts.contains_key(key) {
                continue;
            }
            let entry = map.counts.entry(key.clone()).or_insert((0, now));
            entry.0 += 1;
        }
    }

    pub fn clear(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            map.counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hash_abandoned_by_its_caller_keeps_its_turn_until_it_is_done() {
        // Turns of their own: other tests hash at the same time on the shared ones.
        let turns = std::sync::Arc::new(tokio::sync::Semaphore::new(2));
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let turns = turns.clone();
                tokio::spawn(
                    async move { verify_password_taking(&turns, "guess".into(), None).await },
                )
            })
            .collect();
        let started = Instant::now();
        while turns.available_permits() > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the hashes never started"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The callers hang up mid-hash (a client disconnecting, a request timing out).
        for c in &callers {
            c.abort();
        }
        for c in callers {
            let _ = c.await;
        }
        // Their hashes still run, so their turns are still taken: abandoned hashes cannot
        // pile up beyond one per core.
        assert_eq!(
            turns.available_permits(),
            0,
            "the turns were given back while the hashes still ran"
        );
        let freed = tokio::time::timeout(Duration::from_secs(10), turns.acquire_many(2)).await;
        assert!(freed.is_ok(), "the turns never came back");
    }

    #[test]
    fn one_ipv6_64_is_one_client_and_mapped_addresses_are_ipv4() {
        let key = |s: &str| client_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2::10"), key("2001:db8:1:2:ffff::99"));
        assert_ne!(key("2001:db8:1:2::10"), key("2001:db8:1:3::10"));
        assert_eq!(key("::ffff:198.51.100.7"), key("198.51.100.7"));
        assert_eq!(key("198.51.100.7"), "ip:198.51.100.7");
    }

    #[test]
    fn the_limiter_refuses_new_keys_when_full_instead_of_growing() {
        // Every key locked (one failure each is the limit here) and the map full.
        let limiter = LoginLimiter::new(1, Duration::from_secs(60));
        for i in 0..MAX_LIMITER_KEYS / 2 {
            assert!(
                limiter
                    .attempt(&[format!("user:u{i}"), format!("ip:k{i}")])
                    .is_ok()
            );
        }
        // Full: a new user name is refused (and told when to come back)...
        assert!(
            limiter
                .attempt(&["user:new".into(), "ip:new".into()])
                .is_err()
        );
        limiter.record_failure(&["oidc-refusal:new".into()]);
        // ...the locks it holds still hold, and it does not grow.
        assert!(
            limiter
                .attempt(&["user:u1".into(), "ip:k1".into()])
                .is_err()
        );
        let len = limiter.failures.lock().unwrap().counts.len();
        assert_eq!(len, MAX_LIMITER_KEYS);
    }

    #[test]
    fn limiter_locks_after_max_failures_and_clears_on_success() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = vec!["user:alice".to_owned(), "ip:198.51.100.1".to_owned()];
        for _ in 0..3 {
            assert!(limiter.check(&keys).is_ok());
            limiter.record_failure(&keys);
        }
        let wait = limiter.check(&keys).unwrap_err();
        assert!(wait > 0 && wait <= 60);
        // Another user from the same address is locked too: the address key matches.
        assert!(
            limiter
                .check(&["user:bob".into(), "ip:198.51.100.1".into()])
                .is_err()
        );
        assert!(
            limiter
                .check(&["user:bob".into(), "ip:203.0.113.7".into()])
                .is_ok()
        );
        limiter.clear(&keys);
        assert!(limiter.check(&keys).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_with_the_reused_buffer_and_agree_with_argon2() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify_password("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        // A hash made the ordinary way (as stored before) verifies too, and ours verifies
        // with the ordinary verifier.
        let salt = SaltString::generate(&mut OsRng);
        let classic = Argon2::default()
            .hash_password(b"another one", &salt)
            .unwrap()
            .to_string();
        assert!(
            verify_password("another one".into(), Some(classic))
                .await
                .unwrap()
        );
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(
            !verify_password("x".into(), None).await.unwrap(),
            "no user, no sign-in"
        );
    }

    #[test]
    fn parallel_attempts_are_counted_before_any_is_checked() {
        let limiter = LoginLimiter::new(5, Duration::from_secs(60));
        let keys = vec!["user:alice".to_owned(), "ip:198.51.100.1".to_owned()];
        let admitted = (0..41).filter(|_| limiter.attempt(&keys).is_ok()).count();
        assert_eq!(admitted, 5, "only five guesses get to the password check");
        limiter.clear(&keys);
        assert!(limiter.attempt(&keys).is_ok());
    }

    #[test]
    fn limiter_window_expires() {
        let limiter = LoginLimiter::new(1, Duration::from_millis(50));
        let keys = vec!["user:alice".to_owned()];
        limiter.record_failure(&keys);
        assert!(limiter.check(&keys).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.check(&keys).is_ok());
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2"));
        assert!(
            verify_password("correct horse battery".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
        assert!(
            !verify_password("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
    }
}
