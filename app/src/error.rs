//! The one error type that crosses server functions (and, later, the REST API).
//!
//! Variants carry what a page needs to render: validation failures per field, or a
//! message safe to show. Internal failures are logged where they happen and cross the
//! wire only as [`AppError::Internal`], so database errors never reach the browser.

use crate::domain::FieldErrors;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please correct the highlighted fields.")]
    Validation(FieldErrors),
    #[error("Please sign in.")]
    Unauthenticated,
    #[error("You must change your password before you continue.")]
    PasswordChangeRequired,
    #[error("You do not have permission to do that.")]
    Forbidden,
    #[error("{0} was not found.")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("Too many failed sign-in attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    #[error("The server is busy checking other sign-ins. Try again in {retry_after_secs} seconds.")]
    Busy { retry_after_secs: u64 },
    #[error("Something went wrong on our side. It has been logged; please try again.")]
    Internal,
    /// The request could not be carried (network, malformed arguments).
    #[error("The request failed: {0}")]
    Transport(String),
}

impl AppError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation(FieldErrors::single(field, message))
    }

    /// The error in words for a page that has no form fields to highlight (a page that
    /// failed to load): a field error says what is wrong instead of pointing at a field.
    pub fn summary(&self) -> String {
        match self {
            AppError::Validation(errors) if !errors.0.is_empty() => errors
                .0
                .iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    }

    /// The message for one form field, if this error carries one.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            AppError::Validation(errors) => errors.get(field).map(str::to_owned),
            _ => None,
        }
    }

    pub fn status_code(&self) -> u16 {
        match self {
            AppError::Validation(_) => 422,
            AppError::Unauthenticated => 401,
            AppError::PasswordChangeRequired | AppError::Forbidden => 403,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::RateLimited { .. } => 429,
            AppError::Busy { .. } => 503,
            AppError::Internal => 500,
            AppError::Transport(_) => 400,
        }
    }
}

impl From<FieldErrors> for AppError {
    fn from(errors: FieldErrors) -> Self {
        AppError::Validation(errors)
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Transport(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<crate::store::StoreError> for AppError {
    #[track_caller]
    fn from(error: crate::store::StoreError) -> Self {
        let at = std::panic::Location::caller();
        tracing::error!(%error, %at, "store error");
        AppError::Internal
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_says_what_is_wrong_where_no_field_is_shown() {
        assert_eq!(
            AppError::field("vms", "Select at least one VM.").summary(),
            "Select at least one VM."
        );
        assert_eq!(
            AppError::Forbidden.summary(),
            AppError::Forbidden.to_string()
        );
    }
}
