//! The pure core of Portcullis: types that parse instead of validate, and the rules
//! (permissions, password policy, client address resolution) that every adapter — pages,
//! server functions, the REST API, the agent protocol — translates to and from.
//!
//! No I/O happens here and nothing here depends on the `ssr` feature, so the same rules
//! compile into the browser bundle and run in unit tests without a database.

pub mod api_token;
pub mod audit;
pub mod enforcement;
pub mod enroll;
pub mod field;
pub mod iso_duration;
pub mod jit;
pub mod net;
pub mod notify;
pub mod request;
pub mod role;
pub mod secret;
pub mod sso;
pub mod user;
pub mod vm;
pub mod vm_import;

pub use field::{FieldError, FieldErrors};
pub use net::{Cidr, client_ip};
pub use role::{
    Action, Resource, Role, RoleAssignment, Scope, Visibility, permits, permits_approval,
    visibility,
};
pub use user::{NewPassword, Username};
