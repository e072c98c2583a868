//! Checks shared by the handlers that read request bodies: errors collected per JSON path,
//! and the rule that a body naming a VM names the VM of the path.

use super::{ApiError, ApiResult};
use portcullis_app::store::StoredVm;

/// The body's VM must be the path's VM when it names one.
pub fn check_body_vm(body_id: Option<&str>, vm: &StoredVm, field: &str) -> ApiResult<()> {
    match body_id {
        Some(id) if id != vm.id && id != vm.name => Err(ApiError::field(
            field,
            format!("The body names VM '{id}', the path names {}.", vm.name),
        )),
        _ => Ok(()),
    }
}

/// Collects JSON-path keyed errors so the caller sees every problem at once.
#[derive(Default)]
pub struct ApiErrors(Vec<(String, String)>);

impl ApiErrors {
    pub fn add(&mut self, field: String, message: impl Into<String>) {
        self.0.push((field, message.into()));
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut errors = portcullis_app::domain::FieldErrors::new();
        for (f, m) in self.0 {
            errors.add(&f, m);
        }
        Err(ApiError::from_app(errors.into(), &|f| f.to_owned()))
    }
}
