//! One module per page. Pages render and dispatch; rules live in the domain and services.

mod activity;
mod admin_users;
mod configure;
mod confirm;
mod home;
mod jit;
mod login;
mod notifications;
mod password;
mod request;
mod request_detail;
mod requests;
mod tokens;
mod vm_import;
mod vms;

pub use activity::{ActivityPage, remember_browser_zone};
pub use admin_users::AdminUsersPage;
pub use configure::ConfigurePage;
pub use confirm::ConfirmPage;
pub use home::HomePage;
pub use jit::JitPage;
pub use login::LoginPage;
pub use notifications::{AccountNotificationsPage, NotificationsPage};
pub use password::PasswordPage;
pub use request::RequestAccessPage;
pub use request_detail::RequestDetailPage;
pub use requests::RequestsPage;
pub use tokens::TokensPage;
pub use vm_import::ImportVmsPage;
pub use vms::{NewVmPage, VmPage};

use crate::components::Shell;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(res) = use_context::<leptos_axum::ResponseOptions>() {
        res.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found" />
        <Shell>
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. " <a href="/">"Go to the overview"</a>"."</p>
        </Shell>
    }
}
