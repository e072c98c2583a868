//! Server configuration: a TOML file, overridden by `PORTCULLIS_*` environment variables.
//! Every bad value is refused at start-up with a message that names the setting.

use portcullis_app::domain::Cidr;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// The address users type, e.g. `https://portcullis.example.org`. When unset, the
    /// origin check compares against the request's own Host header.
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<Cidr>,
    /// 64 or more bytes, base64: signs the session cookie. Generated per start if unset.
    pub session_key: Option<Vec<u8>>,
    /// Where the compiled site (pkg/, assets) lives.
    pub site_root: String,
    pub log_format: LogFormat,
    /// Whether the user name and password form is offered. Federated-only sites turn it off.
    pub local_accounts: bool,
    /// OpenID Connect providers, each a button on the sign-in page.
    pub oidc: Vec<OidcProviderConfig>,
    /// The activity log's HMAC key: given, or kept in a file (created on first start).
    pub audit_key: AuditKeySource,
    /// Where the log's newest verified position is kept outside the database.
    pub audit_anchor_file: Option<PathBuf>,
    /// Agents long-polling this replica at once; beyond it, 503 with Retry-After.
    pub max_long_polls: usize,
    /// How long any request but an agent's long poll may take to be answered.
    pub request_timeout: std::time::Duration,
    /// Who may read `/metrics`; nobody by default.
    pub metrics: MetricsAccess,
}

/// Who may scrape `/metrics`. With neither a token nor addresses the endpoint does not
/// exist (404); with both, a scraper needs both.
#[derive(Clone, Default)]
pub struct MetricsAccess {
    /// `metrics_token`: scrapers send `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// `metrics_allowed`: client addresses (as resolved through `trusted_proxies`) allowed.
    pub allowed: Vec<Cidr>,
}

impl MetricsAccess {
    pub fn enabled(&self) -> bool {
        self.token.is_some() || !self.allowed.is_empty()
    }
}

impl std::fmt::Debug for MetricsAccess {
    // The token must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAccess")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// A metrics token shorter than this is refused: it is all that guards the endpoint.
const MIN_METRICS_TOKEN_CHARS: usize = 16;

/// Where the activity log's key comes from. It must not live in the database: whoever can
/// rewrite the database must not be able to re-sign the log.
#[derive(Clone)]
pub enum AuditKeySource {
    /// `audit_key` / `PORTCULLIS_AUDIT_KEY` (base64).
    Given(Vec<u8>),
    /// `audit_key_file`, or beside an SQLite database; a random key is written there
    /// (mode 0600) the first time.
    File(PathBuf),
}

impl std::fmt::Debug for AuditKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditKeySource::Given(_) => f.write_str("Given(<redacted>)"),
            AuditKeySource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// The file path of an `sqlite:` URL (`sqlite://PATH`, `sqlite:PATH`, query dropped).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// One `[[oidc]]` table: an identity provider users may sign in with.
#[derive(Clone)]
pub struct OidcProviderConfig {
    /// Short name used in URLs (`/auth/oidc/{id}/…`) and stored with each federated user.
    pub id: String,
    /// Shown on the button: "Sign in with {name}".
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    /// Overrides the end-session endpoint the provider advertises (or supplies one).
    pub end_session_url: Option<String>,
}

impl std::fmt::Debug for OidcProviderConfig {
    // The client secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProviderConfig")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// A setting of one `[[oidc]]` table, named with the provider it belongs to.
    #[error("oidc provider '{provider}', {key}: {message}")]
    Oidc {
        provider: String,
        key: String,
        message: String,
    },
}

/// The file's shape. Unknown keys are refused so that a typo does not silently fall back
/// to a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    database_url: Option<String>,
    public_url: Option<String>,
    trusted_proxies: Option<Vec<String>>,
    session_key: Option<String>,
    site_root: Option<String>,
    log_format: Option<String>,
    local_accounts: Option<bool>,
    audit_key: Option<String>,
    audit_key_file: Option<PathBuf>,
    audit_anchor_file: Option<PathBuf>,
    max_long_polls: Option<usize>,
    request_timeout_secs: Option<u64>,
    metrics_token: Option<String>,
    metrics_token_file: Option<PathBuf>,
    metrics_allowed: Option<Vec<String>>,
    #[serde(default)]
    oidc: Vec<FileOidc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOidc {
    id: Option<String>,
    name: Option<String>,
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    scopes: Option<Vec<String>>,
    username_claim: Option<String>,
    email_claim: Option<String>,
    name_claim: Option<String>,
    groups_claim: Option<String>,
    end_session_url: Option<String>,
}

impl Config {
    /// Reads `path` (if given) and then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        Self::from_sources(file, |k| std::env::var(k).ok())
    }

    fn from_sources(
        file: FileConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let pick = |key: &str, file_value: Option<String>| env(key).or(file_value);

        let listen_raw =
            pick("PORTCULLIS_LISTEN", file.listen).unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen = listen_raw.parse().map_err(|_| ConfigError::Invalid {
            key: "listen (PORTCULLIS_LISTEN)",
            message: format!("'{listen_raw}' is not an address and port like 127.0.0.1:3000"),
        })?;

        let database_url = pick("PORTCULLIS_DATABASE_URL", file.database_url)
            .unwrap_or_else(|| "sqlite://portcullis.db".into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            return Err(ConfigError::Invalid {
                key: "database_url (PORTCULLIS_DATABASE_URL)",
                message: "use sqlite://PATH or postgres://USER@HOST/DB".into(),
            });
        }

        let public_url = pick("PORTCULLIS_PUBLIC_URL", file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        if let Some(url) = &public_url {
            let ok = (url.starts_with("http://") || url.starts_with("https://"))
                && url
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "public_url (PORTCULLIS_PUBLIC_URL)",
                    message: format!(
                        "'{url}' is not an origin like https://portcullis.example.org"
                    ),
                });
            }
        }

        let trusted_proxies = cidr_list(
            env("PORTCULLIS_TRUSTED_PROXIES"),
            file.trusted_proxies,
            "trusted_proxies (PORTCULLIS_TRUSTED_PROXIES)",
        )?;

        let session_key = match pick("PORTCULLIS_SESSION_KEY", file.session_key) {
            None => None,
            Some(raw) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map_err(|_| ConfigError::Invalid {
                        key: "session_key (PORTCULLIS_SESSION_KEY)",
                        message: "not valid base64; generate one with `openssl rand -base64 64`"
                            .into(),
                    })?;
                if bytes.len() < 64 {
                    return Err(ConfigError::Invalid {
                        key: "session_key (PORTCULLIS_SESSION_KEY)",
                        message: format!(
                            "{} bytes; at least 64 are needed (`openssl rand -base64 64`)",
                            bytes.len()
                        ),
                    });
                }
                Some(bytes)
            }
        };

        let audit_key = match (
            pick("PORTCULLIS_AUDIT_KEY", file.audit_key),
            env("PORTCULLIS_AUDIT_KEY_FILE")
                .map(PathBuf::from)
                .or(file.audit_key_file),
        ) {
            (Some(raw), _) => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(raw.trim())
                    .map_err(|_| ConfigError::Invalid {
                        key: "audit_key (PORTCULLIS_AUDIT_KEY)",
                        message: "not valid base64; generate one with `openssl rand -base64 32`"
                            .into(),
                    })?;
                portcullis_app::domain::audit::AuditKey::new(bytes.clone()).map_err(|message| {
                    ConfigError::Invalid {
                        key: "audit_key (PORTCULLIS_AUDIT_KEY)",
                        message,
                    }
                })?;
                AuditKeySource::Given(bytes)
            }
            (None, Some(path)) => AuditKeySource::File(path),
            (None, None) => match sqlite_path(&database_url) {
                Some(db) => {
                    AuditKeySource::File(PathBuf::from(format!("{}.audit-key", db.display())))
                }
                None => {
                    return Err(ConfigError::Invalid {
                        key: "audit_key (PORTCULLIS_AUDIT_KEY) or audit_key_file",
                        message:
                            "needed with PostgreSQL: the activity log's key must live outside \
                                  the database, the same on every replica \
                                  (`openssl rand -base64 32`)"
                                .into(),
                    });
                }
            },
        };
        let audit_anchor_file = env("PORTCULLIS_AUDIT_ANCHOR_FILE")
            .map(PathBuf::from)
            .or(file.audit_anchor_file)
            .or_else(|| match &audit_key {
                AuditKeySource::File(key) => {
                    Some(PathBuf::from(format!("{}.anchor", key.display())))
                }
                AuditKeySource::Given(_) => sqlite_path(&database_url)
                    .map(|db| PathBuf::from(format!("{}.audit-anchor", db.display()))),
            });

        let max_long_polls = match env("PORTCULLIS_MAX_LONG_POLLS") {
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "max_long_polls (PORTCULLIS_MAX_LONG_POLLS)",
                message: format!("'{raw}' is not a number"),
            })?,
            None => file.max_long_polls.unwrap_or(10_000),
        };
        if max_long_polls == 0 {
            return Err(ConfigError::Invalid {
                key: "max_long_polls (PORTCULLIS_MAX_LONG_POLLS)",
                message: "at least 1: agents need to wait for news somewhere".into(),
            });
        }

        let request_timeout_secs = match env("PORTCULLIS_REQUEST_TIMEOUT_SECS") {
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Invalid {
                key: "request_timeout_secs (PORTCULLIS_REQUEST_TIMEOUT_SECS)",
                message: format!("'{raw}' is not a number of seconds"),
            })?,
            None => file.request_timeout_secs.unwrap_or(30),
        };
        if !(1..=600).contains(&request_timeout_secs) {
            return Err(ConfigError::Invalid {
                key: "request_timeout_secs (PORTCULLIS_REQUEST_TIMEOUT_SECS)",
                message: "1 to 600 seconds".into(),
            });
        }
        let request_timeout = std::time::Duration::from_secs(request_timeout_secs);

        let metrics = metrics_access(
            pick("PORTCULLIS_METRICS_TOKEN", file.metrics_token),
            env("PORTCULLIS_METRICS_TOKEN_FILE")
                .map(PathBuf::from)
                .or(file.metrics_token_file),
            cidr_list(
                env("PORTCULLIS_METRICS_ALLOWED"),
                file.metrics_allowed,
                "metrics_allowed (PORTCULLIS_METRICS_ALLOWED)",
            )?,
        )?;

        let site_root = pick("PORTCULLIS_SITE_ROOT", file.site_root)
            .or_else(|| env("LEPTOS_SITE_ROOT"))
            .unwrap_or_else(|| "target/site".into());

        let log_format = match pick("PORTCULLIS_LOG_FORMAT", file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "log_format (PORTCULLIS_LOG_FORMAT)",
                    message: format!("'{other}': use text or json"),
                });
            }
        };

        let local_accounts = match env("PORTCULLIS_LOCAL_ACCOUNTS").as_deref() {
            None => file.local_accounts.unwrap_or(true),
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    key: "local_accounts (PORTCULLIS_LOCAL_ACCOUNTS)",
                    message: format!("'{other}': use true or false"),
                });
            }
        };

        let oidc = file
            .oidc
            .into_iter()
            .enumerate()
            .map(|(i, p)| oidc_provider(i, p, &env))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, p) in oidc.iter().enumerate() {
            if oidc[..i].iter().any(|q| q.id == p.id) {
                return Err(ConfigError::Oidc {
                    provider: p.id.clone(),
                    key: "id".into(),
                    message: "two providers have this id; each needs its own".into(),
                });
            }
        }
        if !oidc.is_empty() && public_url.is_none() {
            return Err(ConfigError::Invalid {
                key: "public_url (PORTCULLIS_PUBLIC_URL)",
                message: "needed with [[oidc]] providers: the redirect URI is built from it".into(),
            });
        }
        if !local_accounts && oidc.is_empty() {
            return Err(ConfigError::Invalid {
                key: "local_accounts (PORTCULLIS_LOCAL_ACCOUNTS)",
                message: "false leaves no way to sign in: configure an [[oidc]] provider".into(),
            });
        }

        Ok(Config {
            listen,
            database_url,
            public_url,
            trusted_proxies,
            session_key,
            site_root,
            log_format,
            local_accounts,
            oidc,
            audit_key,
            audit_anchor_file,
            max_long_polls,
            request_timeout,
            metrics,
        })
    }

    /// Parses TOML text the way a configuration file is read, with `env` for the
    /// environment; for tests that assemble a configuration in code.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: "(inline)".into(),
            message: e.to_string(),
        })?;
        Self::from_sources(file, env)
    }

    /// A configuration for tests and embedded use: everything default but the database.
    /// With PostgreSQL the activity log gets a random key for this configuration.
    pub fn for_database(database_url: &str) -> Self {
        let mut config =
            Self::from_sources(FileConfig::default(), |_| None).expect("defaults are valid");
        config.database_url = database_url.to_owned();
        match sqlite_path(database_url) {
            Some(db) => {
                config.audit_key =
                    AuditKeySource::File(PathBuf::from(format!("{}.audit-key", db.display())));
                config.audit_anchor_file =
                    Some(PathBuf::from(format!("{}.audit-key.anchor", db.display())));
            }
            None => {
                use rand::RngCore;
                let mut key = vec![0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                config.audit_key = AuditKeySource::Given(key);
                config.audit_anchor_file = None;
            }
        }
        config
    }
}

/// `metrics_token` (or the file holding it) and `metrics_allowed`.
fn metrics_access(
    token: Option<String>,
    token_file: Option<PathBuf>,
    allowed: Vec<Cidr>,
) -> Result<MetricsAccess, ConfigError> {
    const TOKEN_KEY: &str = "metrics_token (PORTCULLIS_METRICS_TOKEN)";
    let token = match (token, token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: TOKEN_KEY,
                message: "give metrics_token or metrics_token_file, not both".into(),
            });
        }
        (Some(t), None) => Some(t),
        (None, Some(path)) => {
            Some(
                std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                    key: "metrics_token_file (PORTCULLIS_METRICS_TOKEN_FILE)",
                    message: format!("cannot read {}: {e}", path.display()),
                })?,
            )
        }
        (None, None) => None,
    }
    .map(|t| t.trim().to_owned());
    if let Some(t) = &token
        && (t.chars().count() < MIN_METRICS_TOKEN_CHARS || !t.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError::Invalid {
            key: TOKEN_KEY,
            message: format!(
                "use at least {MIN_METRICS_TOKEN_CHARS} printable characters without spaces \
                 (`openssl rand -hex 32`)"
            ),
        });
    }
    Ok(MetricsAccess { token, allowed })
}

/// A list of networks: the environment's comma-separated value wins over the file's
/// list; each entry is parsed, and a bad one is refused naming `key` and the entry.
fn cidr_list(
    env_value: Option<String>,
    file_value: Option<Vec<String>>,
    key: &'static str,
) -> Result<Vec<Cidr>, ConfigError> {
    let entries: Vec<String> = match env_value {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => file_value.unwrap_or_default(),
    };
    entries
        .iter()
        .map(|e| {
            Cidr::parse(e).map_err(|err| ConfigError::Invalid {
                key,
                message: format!("'{e}': {err}"),
            })
        })
        .collect()
}

/// Reads one `[[oidc]]` table. The secret may come from the table, from a file (so it can
/// live outside the configuration, e.g. a mounted secret), or from
/// `PORTCULLIS_OIDC_<ID>_CLIENT_SECRET`, which wins.
fn oidc_provider(
    index: usize,
    p: FileOidc,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<OidcProviderConfig, ConfigError> {
    let label = p.id.clone().unwrap_or_else(|| format!("#{}", index + 1));
    let err = |key: &str, message: String| ConfigError::Oidc {
        provider: label.clone(),
        key: key.to_owned(),
        message,
    };
    let required = |key: &str, v: Option<String>| {
        v.map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err(key, "is required".into()))
    };
    let id = required("id", p.id.clone())?;
    if id.len() > 32
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(err(
            "id",
            format!("'{id}': use 1 to 32 lowercase letters, digits and -"),
        ));
    }
    let name = required("name", p.name)?;
    let issuer = required("issuer", p.issuer)?;
    if !url_allowed(&issuer) {
        return Err(err(
            "issuer",
            format!("'{issuer}' is not an https:// URL (plain http only on loopback)"),
        ));
    }
    let client_id = required("client_id", p.client_id)?;
    let env_key = format!(
        "PORTCULLIS_OIDC_{}_CLIENT_SECRET",
        id.to_ascii_uppercase().replace('-', "_")
    );
    let client_secret = match (env(&env_key), p.client_secret, p.client_secret_file) {
        (Some(s), _, _) => Some(s),
        (None, Some(_), Some(_)) => {
            return Err(err(
                "client_secret",
                "give client_secret or client_secret_file, not both".into(),
            ));
        }
        (None, Some(s), None) => Some(s),
        (None, None, Some(path)) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| {
                    err(
                        "client_secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_owned(),
        ),
        (None, None, None) => None,
    }
    .filter(|s| !s.is_empty());
    let mut scopes = p
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"'))
    {
        return Err(err("scopes", format!("'{bad}' is not a scope name")));
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let claim = |key: &str, v: Option<String>, default: &str| {
        let v = v.unwrap_or_else(|| default.to_owned());
        if v.trim().is_empty() {
            Err(err(key, "must name a claim".into()))
        } else {
            Ok(v.trim().to_owned())
        }
    };
    let end_session_url = match p.end_session_url.filter(|u| !u.trim().is_empty()) {
        Some(u) if !url_allowed(&u) => {
            return Err(err(
                "end_session_url",
                format!("'{u}' is not an https:// URL (plain http only on loopback)"),
            ));
        }
        other => other,
    };
    Ok(OidcProviderConfig {
        id,
        name,
        issuer,
        client_id,
        client_secret,
        scopes,
        username_claim: claim("username_claim", p.username_claim, "preferred_username")?,
        email_claim: claim("email_claim", p.email_claim, "email")?,
        name_claim: claim("name_claim", p.name_claim, "name")?,
        groups_claim: claim("groups_claim", p.groups_claim, "groups")?,
        end_session_url,
    })
}

/// Identity providers are reached over https; plain http is accepted only on loopback
/// (tests, or a provider on the same host).
fn url_allowed(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_only = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    match scheme {
        "https" => !host_only.is_empty(),
        "http" => matches!(host_only, "127.0.0.1" | "localhost" | "::1"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(file).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: e.to_string(),
        })?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_sources(file, |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_are_embedded_sqlite_on_loopback() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://portcullis.db");
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            "listen = \"0.0.0.0:8080\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
            &[
                ("PORTCULLIS_LISTEN", "127.0.0.1:9000"),
                ("PORTCULLIS_TRUSTED_PROXIES", "127.0.0.1, ::1"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.trusted_proxies.len(), 2);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = load("", &[("PORTCULLIS_LISTEN", "localhost")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PORTCULLIS_LISTEN"), "{e}");
        let e = load("trusted_proxies = [\"10.0.0.1/8\"]", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trusted_proxies") && e.contains("10.0.0.0/8"),
            "{e}"
        );
        let e = load("", &[("PORTCULLIS_SESSION_KEY", "c2hvcnQ=")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 64"), "{e}");
        let e = load("", &[("PORTCULLIS_DATABASE_URL", "mysql://x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PORTCULLIS_DATABASE_URL"), "{e}");
        let e = load("", &[("PORTCULLIS_PUBLIC_URL", "portcullis.example.org")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("public_url"), "{e}");
        let e = load("lissen = \"x\"", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = load("", &[("PORTCULLIS_LOG_FORMAT", "xml")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("log_format"), "{e}");
    }

    #[test]
    fn metrics_are_off_unless_a_token_or_addresses_are_given() {
        let c = load("", &[]).unwrap();
        assert!(!c.metrics.enabled());
        let c = load(
            "metrics_allowed = [\"10.1.0.0/16\", \"::1\"]",
            &[("PORTCULLIS_METRICS_TOKEN", "0123456789abcdef0123")],
        )
        .unwrap();
        assert!(c.metrics.enabled());
        assert_eq!(c.metrics.allowed.len(), 2);
        assert_eq!(c.metrics.token.as_deref(), Some("0123456789abcdef0123"));
        assert!(
            !format!("{c:?}").contains("0123456789abcdef0123"),
            "token in Debug"
        );
        let c = load(
            "metrics_allowed = [\"10.1.0.0/16\"]",
            &[("PORTCULLIS_METRICS_ALLOWED", "192.0.2.0/24, 198.51.100.7")],
        )
        .unwrap();
        assert_eq!(c.metrics.allowed.len(), 2, "the environment wins");
        assert!(c.metrics.token.is_none());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file-0123456789\n").unwrap();
        let text = format!("metrics_token_file = {:?}", file.display().to_string());
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.metrics.token.as_deref(), Some("from-a-file-0123456789"));
    }

    #[test]
    fn bad_metrics_settings_name_the_setting() {
        let e = load("", &[("PORTCULLIS_METRICS_TOKEN", "short")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("PORTCULLIS_METRICS_TOKEN") && e.contains("16"),
            "{e}"
        );
        let e = load("metrics_token = \"has a space in it, long enough\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_token"), "{e}");
        let e = load("metrics_allowed = [\"10.0.0.1/8\"]", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("metrics_allowed") && e.contains("10.0.0.0/8"),
            "{e}"
        );
        let e = load("", &[("PORTCULLIS_METRICS_ALLOWED", "everyone")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PORTCULLIS_METRICS_ALLOWED"), "{e}");
        let e = load(
            "metrics_token = \"0123456789abcdef0123\"\nmetrics_token_file = \"/x\"",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = load("metrics_token_file = \"/nonexistent/token\"", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_token_file"), "{e}");
    }

    const PROVIDER: &str = r#"
        public_url = "https://jit.example.org"
        [[oidc]]
        id = "corp"
        name = "Corp SSO"
        issuer = "https://login.example.org/realms/corp"
        client_id = "portcullis"
        client_secret = "from the file"
    "#;

    #[test]
    fn oidc_providers_have_defaults_and_take_the_secret_from_the_environment() {
        let c = load(PROVIDER, &[]).unwrap();
        assert!(c.local_accounts);
        let p = &c.oidc[0];
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert_eq!(p.username_claim, "preferred_username");
        assert_eq!(p.groups_claim, "groups");
        assert_eq!(p.client_secret.as_deref(), Some("from the file"));
        assert!(
            !format!("{p:?}").contains("from the file"),
            "secret in Debug"
        );
        let c = load(
            PROVIDER,
            &[
                ("PORTCULLIS_OIDC_CORP_CLIENT_SECRET", "from env"),
                ("PORTCULLIS_LOCAL_ACCOUNTS", "false"),
            ],
        )
        .unwrap();
        assert_eq!(c.oidc[0].client_secret.as_deref(), Some("from env"));
        assert!(!c.local_accounts);

        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "from a file\n").unwrap();
        let text = PROVIDER.replace(
            "client_secret = \"from the file\"",
            &format!("client_secret_file = {:?}", secret.display().to_string()),
        );
        let c = load(&text, &[]).unwrap();
        assert_eq!(c.oidc[0].client_secret.as_deref(), Some("from a file"));
    }

    #[test]
    fn bad_oidc_settings_name_the_provider_and_key() {
        let cases = [
            (PROVIDER.replace("https://login", "http://login"), "issuer"),
            (PROVIDER.replace("id = \"corp\"", "id = \"Corp SSO\""), "id"),
            (
                PROVIDER.replace("client_id = \"portcullis\"", ""),
                "client_id",
            ),
            (
                PROVIDER.replace("public_url = \"https://jit.example.org\"", ""),
                "public_url",
            ),
            (format!("{PROVIDER}\nscopes = [\"a b\"]"), "scopes"),
            (
                format!("{PROVIDER}\nclient_secret_file = \"/x\""),
                "client_secret",
            ),
            (format!("{PROVIDER}\ngroup_claim = \"x\""), "unknown field"),
            (
                format!(
                    "{PROVIDER}\n[[oidc]]{}",
                    PROVIDER.split_once("[[oidc]]").unwrap().1
                ),
                "two providers",
            ),
        ];
        for (text, expected) in cases {
            let e = load(&text, &[]).unwrap_err().to_string();
            assert!(e.contains(expected), "{expected}: {e}");
        }
        let e = load("local_accounts = false", &[]).unwrap_err().to_string();
        assert!(e.contains("local_accounts"), "{e}");
        let e = load(PROVIDER, &[("PORTCULLIS_LOCAL_ACCOUNTS", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("PORTCULLIS_LOCAL_ACCOUNTS"), "{e}");
        // Loopback issuers may use plain http (tests, a provider on the same host).
        let local = PROVIDER.replace("https://login.example.org", "http://127.0.0.1:8080");
        assert!(load(&local, &[]).is_ok());
    }
}
