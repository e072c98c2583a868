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

        let proxies: Vec<String> = match env("PORTCULLIS_TRUSTED_PROXIES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = proxies
            .iter()
            .map(|p| {
                Cidr::parse(p).map_err(|e| ConfigError::Invalid {
                    key: "trusted_proxies (PORTCULLIS_TRUSTED_PROXIES)",
                    message: format!("'{p}': {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

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

        Ok(Config {
            listen,
            database_url,
            public_url,
            trusted_proxies,
            session_key,
            site_root,
            log_format,
        })
    }

    /// A configuration for tests and embedded use: everything default but the database.
    pub fn for_database(database_url: &str) -> Self {
        let mut config =
            Self::from_sources(FileConfig::default(), |_| None).expect("defaults are valid");
        config.database_url = database_url.to_owned();
        config
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
}
