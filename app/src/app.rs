//! The HTML shell and the router: which page answers which path.

use crate::api::whoami;
use crate::components::UserResource;
use crate::pages::*;
use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, path};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                // pkg/portcullis.<hash>.css when the site lists hashes (hash.txt).
                <HashedStylesheet options=options.clone() id="leptos" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The page's Content-Security-Policy: scripts only from this origin, inline ones only
/// with this response's nonce (Leptos puts it on its hydration scripts), WebAssembly
/// compiled from this origin, and no framing.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    if let (Some(nonce), Some(res)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        let policy = format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
             style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
        );
        if let Ok(value) = http::HeaderValue::from_str(&policy) {
            res.insert_header(http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    #[cfg(feature = "ssr")]
    content_security_policy();
    let user: UserResource = Resource::new(|| (), |_| whoami());
    provide_context(user);
    crate::components::provide_clock();

    // Tests (and curious users) can tell a hydrated page from server-rendered HTML.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    // Pages render whole (SsrMode::Async): complete HTML without JavaScript, and status
    // codes and redirects can still be set while rendering.
    view! {
        <Title formatter=|t: String| if t.is_empty() { "Portcullis".to_owned() } else { format!("{t} · Portcullis") } />
        <Router>
            <Routes fallback=|| view! { <NotFound /> }>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async />
                <Route path=path!("/") view=HomePage ssr=SsrMode::Async />
                <Route path=path!("/account/password") view=PasswordPage ssr=SsrMode::Async />
                <Route path=path!("/admin/users") view=AdminUsersPage ssr=SsrMode::Async />
                <Route path=path!("/admin/notifications") view=NotificationsPage ssr=SsrMode::Async />
                <Route path=path!("/account/notifications") view=AccountNotificationsPage ssr=SsrMode::Async />
                <Route path=path!("/jit") view=JitPage ssr=SsrMode::Async />
                <Route path=path!("/jit/configure") view=ConfigurePage ssr=SsrMode::Async />
                <Route path=path!("/jit/request") view=RequestAccessPage ssr=SsrMode::Async />
                <Route path=path!("/requests") view=RequestsPage ssr=SsrMode::Async />
                <Route path=path!("/requests/:id") view=RequestDetailPage ssr=SsrMode::Async />
                <Route path=path!("/vms/new") view=NewVmPage ssr=SsrMode::Async />
                <Route path=path!("/vms/import") view=ImportVmsPage ssr=SsrMode::Async />
                <Route path=path!("/vms/:id") view=VmPage ssr=SsrMode::Async />
                <Route path=path!("/activity") view=ActivityPage ssr=SsrMode::Async />
                <Route path=path!("/tokens") view=TokensPage ssr=SsrMode::Async />
                <Route path=path!("/confirm") view=ConfirmPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}
