//! One module per page. Pages render and dispatch; rules live in the domain and services.

mod admin_users;
mod home;
mod login;
mod password;

pub use admin_users::AdminUsersPage;
pub use home::HomePage;
pub use login::LoginPage;
pub use password::PasswordPage;

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
