//! Validation failures keyed by the form field they belong to, so a page can show each
//! message next to its input and an API can return them as a list.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A non-empty-when-returned list of field errors. Parsers collect every problem of a form
/// at once so the user can fix them all in one go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Records the error of a parse result under `field` and returns the value if it parsed.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.as_str())
    }

    /// Whether exactly this message is already recorded under `field`: parts of one form
    /// checked apart may find the same fault.
    pub fn has(&self, field: &str, message: &str) -> bool {
        self.0
            .iter()
            .any(|e| e.field == field && e.message == message)
    }

    /// `Ok(())` when nothing was recorded, so callers can end a parse with `errors.into_result()?`.
    pub fn into_result(self) -> Result<(), FieldErrors> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_collects_every_error_and_keeps_values() {
        let mut errors = FieldErrors::new();
        let good: Option<u8> = errors.check("a", "7".parse::<u8>());
        let bad: Option<u8> = errors.check("b", "300".parse::<u8>());
        assert_eq!(good, Some(7));
        assert_eq!(bad, None);
        assert!(errors.get("b").is_some());
        assert!(errors.get("a").is_none());
        assert!(errors.into_result().is_err());
    }
}
