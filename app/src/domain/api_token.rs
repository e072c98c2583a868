//! Personal API tokens: their printed form, and the rules for a token's name and lifetime.
//!
//! A token reads `pcu_<id>_<secret>`. The id finds the stored row without a scan; the
//! secret is 256 random bits, kept on the server only as a SHA-256 (see
//! [`super::secret`]), so a leaked database does not leak usable tokens. The `pcu_`
//! marker lets secret scanners and humans recognise a Portcullis token.

use thiserror::Error;

pub const TOKEN_MARKER: &str = "pcu";
pub const MAX_TOKEN_DAYS: i64 = 365;
pub const DEFAULT_TOKEN_DAYS: i64 = 30;

/// The two parts of a presented token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenParts<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

/// Splits `pcu_<id>_<secret>`; `None` when it cannot be a Portcullis token.
pub fn parse_token(raw: &str) -> Option<TokenParts<'_>> {
    let rest = raw.strip_prefix(TOKEN_MARKER)?.strip_prefix('_')?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = (40..=64).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some(TokenParts { id, secret })
}

pub fn format_token(id: &str, secret: &str) -> String {
    format!("{TOKEN_MARKER}_{id}_{secret}")
}

/// What the token list shows so a user can recognise a token without its secret.
pub fn display_prefix(id: &str) -> String {
    format!("{TOKEN_MARKER}_{}", &id[..id.len().min(8)])
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenInputError {
    #[error("Give the token a name, e.g. the script or machine that uses it.")]
    EmptyName,
    #[error("A token name has at most 64 characters.")]
    LongName,
    #[error("A token name cannot contain control characters.")]
    ControlCharacters,
    #[error("A token lives 1 to 365 days.")]
    Lifetime,
}

pub fn parse_token_name(raw: &str) -> Result<String, TokenInputError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(TokenInputError::EmptyName);
    }
    if name.chars().count() > 64 {
        return Err(TokenInputError::LongName);
    }
    if name.chars().any(char::is_control) {
        return Err(TokenInputError::ControlCharacters);
    }
    Ok(name.to_owned())
}

/// Lifetime in days, 1–365; empty means the default of 30.
pub fn parse_token_days(raw: &str) -> Result<i64, TokenInputError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(DEFAULT_TOKEN_DAYS);
    }
    match raw.parse::<i64>() {
        Ok(d @ 1..=MAX_TOKEN_DAYS) => Ok(d),
        _ => Err(TokenInputError::Lifetime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";
    const SECRET: &str = "Ab-_0123456789abcdefghijklmnopqrstuvwxyzABC";

    #[test]
    fn a_formatted_token_parses_back() {
        let t = format_token(ID, SECRET);
        assert!(t.starts_with("pcu_0123"));
        assert_eq!(
            parse_token(&t),
            Some(TokenParts {
                id: ID,
                secret: SECRET
            })
        );
        assert_eq!(display_prefix(ID), "pcu_01234567");
    }

    #[test]
    fn foreign_strings_are_not_tokens() {
        for bad in [
            "",
            "pcu_",
            "Bearer x",
            &format!("pcx_{ID}_{SECRET}"),
            &format!("pcu_{}_{SECRET}", &ID[..31]),
            &format!("pcu_{ID}_short"),
            &format!("pcu_{ID}_{SECRET} "),
            &format!("pcu_{ID}_{}", "é".repeat(40)),
        ] {
            assert_eq!(parse_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_and_lifetimes_are_bounded() {
        assert_eq!(parse_token_name(" ci deploy "), Ok("ci deploy".into()));
        assert_eq!(parse_token_name(""), Err(TokenInputError::EmptyName));
        assert_eq!(
            parse_token_name(&"x".repeat(65)),
            Err(TokenInputError::LongName)
        );
        assert_eq!(
            parse_token_name("a\nb"),
            Err(TokenInputError::ControlCharacters)
        );
        assert_eq!(parse_token_days(""), Ok(30));
        assert_eq!(parse_token_days("365"), Ok(365));
        assert_eq!(parse_token_days("0"), Err(TokenInputError::Lifetime));
        assert_eq!(parse_token_days("366"), Err(TokenInputError::Lifetime));
        assert_eq!(parse_token_days("x"), Err(TokenInputError::Lifetime));
    }
}
