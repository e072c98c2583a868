//! User names and the password policy for local accounts.

use thiserror::Error;

/// A local or federated user's login name: 3–64 characters of lowercase letters, digits and
/// `.`, `_`, `-`, `@`. Case is folded so that `Alice` and `alice` are one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

#[derive(Debug, Error, PartialEq, Eq)]
pub enum UsernameError {
    #[error("Enter a user name.")]
    Empty,
    #[error("A user name has 3 to 64 characters.")]
    Length,
    #[error("Use only letters, digits and . _ - @ in a user name.")]
    Characters,
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, UsernameError> {
        let name = raw.trim().to_lowercase();
        if name.is_empty() {
            return Err(UsernameError::Empty);
        }
        let len = name.chars().count();
        if !(3..=64).contains(&len) {
            return Err(UsernameError::Length);
        }
        if !name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
        }) {
            return Err(UsernameError::Characters);
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Username {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password a user chose, checked against the policy. Only new passwords are parsed;
/// a password typed to sign in is compared as given.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(<redacted>)")
    }
}

pub const MIN_PASSWORD_CHARS: usize = 12;
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("A password has at least 12 characters.")]
    TooShort,
    #[error("A password has at most 256 characters.")]
    TooLong,
    #[error("The password must not contain the user name.")]
    ContainsUsername,
    #[error("The two passwords do not match.")]
    Mismatch,
}

impl NewPassword {
    pub fn parse(raw: &str, confirm: &str, username: &Username) -> Result<Self, PasswordError> {
        Self::check_length(raw)?;
        if raw.to_lowercase().contains(username.as_str()) {
            return Err(PasswordError::ContainsUsername);
        }
        if raw != confirm {
            return Err(PasswordError::Mismatch);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The checks that need no user name, for forms whose user name itself is invalid.
    pub fn check_length(raw: &str) -> Result<(), PasswordError> {
        let len = raw.chars().count();
        if len < MIN_PASSWORD_CHARS {
            return Err(PasswordError::TooShort);
        }
        if len > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Display names are free text, bounded so a page stays readable.
pub fn parse_display_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    match name.chars().count() {
        0 => Err("Enter a display name."),
        1..=100 => Ok(name.to_owned()),
        _ => Err("A display name has at most 100 characters."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_refuse_odd_characters() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert_eq!(Username::parse("ab"), Err(UsernameError::Length));
        assert_eq!(Username::parse(""), Err(UsernameError::Empty));
        assert_eq!(Username::parse("bob smith"), Err(UsernameError::Characters));
        assert_eq!(Username::parse("bob;drop"), Err(UsernameError::Characters));
        assert!(Username::parse("ops.bot-1@example.org").is_ok());
        assert_eq!(Username::parse(&"a".repeat(65)), Err(UsernameError::Length));
    }

    #[test]
    fn password_policy() {
        let alice = Username::parse("alice").unwrap();
        assert_eq!(
            NewPassword::parse("short", "short", &alice),
            Err(PasswordError::TooShort)
        );
        assert_eq!(
            NewPassword::parse("my-Alice-password", "my-Alice-password", &alice),
            Err(PasswordError::ContainsUsername)
        );
        assert_eq!(
            NewPassword::parse("correct horse battery", "correct horse batterY", &alice),
            Err(PasswordError::Mismatch)
        );
        let long = "x".repeat(257);
        assert_eq!(
            NewPassword::parse(&long, &long, &alice),
            Err(PasswordError::TooLong)
        );
        let ok =
            NewPassword::parse("correct horse battery", "correct horse battery", &alice).unwrap();
        assert_eq!(ok.expose(), "correct horse battery");
        assert!(!format!("{ok:?}").contains("horse"));
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(parse_display_name("  Alice A. "), Ok("Alice A.".to_owned()));
        assert!(parse_display_name("   ").is_err());
        assert!(parse_display_name(&"x".repeat(101)).is_err());
    }
}
