//! Server functions: thin adapters. Each gets its context, checks permission, parses
//! through the domain, calls a service and maps errors — nothing more.

use crate::error::AppError;
use crate::model::{UserRow, UserView};
use leptos::prelude::*;

pub mod confirm;
pub mod flash;
pub mod jit;
pub mod notify;
pub mod overview;
pub mod sso;
pub mod tokens;
pub mod vm_import;

#[cfg(feature = "ssr")]
pub mod ctx {
    //! Request context for server functions.

    use crate::auth::SESSION_USER_ID;
    use crate::domain::RoleAssignment;
    use crate::error::{AppError, AppResult};
    use crate::state::{AppState, ClientIp};
    use crate::store::StoredUser;
    use leptos::prelude::*;
    use std::net::IpAddr;
    use tower_sessions::Session;

    pub struct Ctx {
        pub state: AppState,
        pub session: Session,
        pub client_ip: IpAddr,
        /// The request's user and roles, once read (see [`crate::auth::RequestUser`]).
        known: crate::auth::RequestUser,
    }

    pub struct Caller {
        pub user: StoredUser,
        pub roles: Vec<RoleAssignment>,
    }

    pub async fn ctx() -> AppResult<Ctx> {
        let state = use_context::<AppState>().ok_or_else(|| {
            tracing::error!("AppState missing from server function context");
            AppError::Internal
        })?;
        let session = leptos_axum::extract::<Session>().await.map_err(|e| {
            tracing::error!(error = %e, "session layer missing");
            AppError::Internal
        })?;
        let parts = use_context::<http::request::Parts>();
        let client_ip = parts
            .as_ref()
            .and_then(|p| p.extensions.get::<ClientIp>().copied())
            .map(|c| c.0)
            .ok_or_else(|| {
                tracing::error!("client address missing from request");
                AppError::Internal
            })?;
        // Shared by every server function of one request; a request that came without
        // one (none should) still works, reading for itself.
        let known = parts
            .and_then(|p| p.extensions.get::<crate::auth::RequestUser>().cloned())
            .unwrap_or_default();
        Ok(Ctx {
            state,
            session,
            client_ip,
            known,
        })
    }

    pub(crate) fn session_error(e: tower_sessions::session::Error) -> AppError {
        tracing::error!(error = %e, "session store error");
        AppError::Internal
    }

    impl Ctx {
        /// The signed-in user, if any. A session whose user was disabled or removed is
        /// ended here, so disabling an account signs it out everywhere.
        pub async fn user(&self) -> AppResult<Option<StoredUser>> {
            let signed_in = self
                .session
                .get::<String>(SESSION_USER_ID)
                .await
                .map_err(session_error)?
                .is_some();
            match self
                .known
                .session_user(&self.state.store, &self.session)
                .await?
            {
                Some(user) => Ok(Some(user)),
                None if signed_in => {
                    self.session.flush().await.map_err(session_error)?;
                    self.known.forget();
                    Ok(None)
                }
                None => Ok(None),
            }
        }

        /// A signed-in user who has no pending forced password change.
        pub async fn caller(&self) -> AppResult<Caller> {
            let user = self.user().await?.ok_or(AppError::Unauthenticated)?;
            if user.must_change_password {
                return Err(AppError::PasswordChangeRequired);
            }
            let roles = self.known.roles(&self.state.store, &user.id).await?;
            Ok(Caller { user, roles })
        }

        /// The signed-in caller as the services see it.
        pub async fn actor(&self) -> AppResult<crate::services::Actor> {
            let caller = self.caller().await?;
            Ok(crate::services::Actor {
                user_id: caller.user.id,
                username: caller.user.username,
                roles: caller.roles,
                ip: self.client_ip,
            })
        }

        /// Starts an authenticated session under a fresh id, so an id planted before
        /// sign-in (session fixation) is worthless afterwards.
        /// Nothing of an earlier sign-in in this browser carries over: not a provider's
        /// end-session link (a password sign-in must not sign out there), not an install
        /// line with its token waiting to be shown to the user who made it.
        pub async fn start_session(&self, user: &StoredUser) -> AppResult<()> {
            self.known.forget();
            self.session.clear().await;
            self.session.cycle_id().await.map_err(session_error)?;
            crate::auth::mark_signed_in(&self.session, user).await
        }

        pub async fn end_session(&self) -> AppResult<()> {
            self.known.forget();
            self.session.flush().await.map_err(session_error)
        }

        /// Keeps `value` for the page a plain form post (no JavaScript) is redirected
        /// to, which shows it once ([`Ctx::take_kept`]): that post's answer is a redirect,
        /// so what it made would otherwise be lost. A hydrated client gets the value in
        /// its answer and nothing is kept. Never in a URL: it may be a secret.
        pub async fn keep_for_next_page<T: serde::Serialize + Send + Sync>(
            &self,
            key: &str,
            value: &T,
        ) -> AppResult<()> {
            if !plain_form_post() {
                return Ok(());
            }
            self.session.insert(key, value).await.map_err(session_error)
        }

        /// After a plain form post from the confirmation page, sends the browser back to
        /// the page the question was asked from rather than to the question (whose object
        /// is gone). [`crate::api::flash::done`] does this by itself.
        pub fn back_from_confirmation(&self) {
            if !plain_form_post() {
                return;
            }
            let back = use_context::<http::request::Parts>()
                .and_then(|p| p.headers.get(http::header::REFERER).cloned())
                .and_then(|v| v.to_str().ok().and_then(super::flash::referer_path));
            if let Some(back) = back {
                leptos_axum::redirect(&back);
            }
        }

        /// What [`Ctx::keep_for_next_page`] kept under `key`, removed as it is read, if
        /// `for_this_page` accepts it; otherwise it stays for the page it was meant for.
        pub async fn take_kept<T: serde::Serialize + serde::de::DeserializeOwned>(
            &self,
            key: &str,
            for_this_page: impl Fn(&T) -> bool,
        ) -> AppResult<Option<T>> {
            match self.session.get::<T>(key).await.map_err(session_error)? {
                Some(value) if for_this_page(&value) => {
                    self.session
                        .remove_value(key)
                        .await
                        .map_err(session_error)?;
                    Ok(Some(value))
                }
                _ => Ok(None),
            }
        }
    }

    /// A browser posting a form without JavaScript asks for HTML and is answered with a
    /// redirect; the server-function client (hydrated page, scripts) asks for JSON.
    fn plain_form_post() -> bool {
        use_context::<http::request::Parts>()
            .and_then(|p| p.headers.get(http::header::ACCEPT).cloned())
            .and_then(|v| v.to_str().ok().map(|s| s.contains("text/html")))
            .unwrap_or(false)
    }

    /// For a plain form post that failed on one row of a list: back to the page it came
    /// from with the error as the framework carries it (`__path`, `__err`) and `key=row`,
    /// so that the page shows the error in that row rather than above the list.
    pub fn error_in_row<T>(result: AppResult<T>, path: &str, key: &str, row: &str) -> AppResult<T> {
        use leptos::server_fn::error::ServerFnUrlError;
        if let Err(error) = &result
            && plain_form_post()
            && let Some(page) = use_context::<http::request::Parts>()
                .and_then(|p| p.headers.get(http::header::REFERER).cloned())
                .and_then(|v| v.to_str().ok().and_then(super::flash::referer_path))
        {
            let (base, query) = page.split_once('?').unwrap_or((&page, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| {
                    let k = kv.split('=').next().unwrap_or_default();
                    !kv.is_empty() && k != key && k != "__path" && k != "__err"
                })
                .collect();
            let page = if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            // Any origin will do: only the path and query are sent back.
            if let Ok(mut url) =
                ServerFnUrlError::new(path, error.clone()).to_url(&format!("http://portal{page}"))
            {
                url.query_pairs_mut().append_pair(key, row);
                let to = match url.query() {
                    Some(q) => format!("{}?{q}", url.path()),
                    None => url.path().to_owned(),
                };
                // Parsing normalised the path (`/%2e//evil` is `//evil`): checked again.
                if let Some(to) = super::flash::local_path(&to) {
                    leptos_axum::redirect(&to);
                }
            }
        }
        result
    }

    /// Gives API clients (fetch from the hydrated page, scripts) a status code that matches
    /// the error. Plain form posts keep the redirect the framework sets up.
    pub fn finish<T>(result: AppResult<T>) -> AppResult<T> {
        if let Err(error) = &result
            && !plain_form_post()
            && let Some(res) = use_context::<leptos_axum::ResponseOptions>()
        {
            res.set_status(
                http::StatusCode::from_u16(error.status_code())
                    .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            );
            if let AppError::RateLimited { retry_after_secs } | AppError::Busy { retry_after_secs } =
                error
                && let Ok(v) = http::HeaderValue::from_str(&retry_after_secs.to_string())
            {
                res.insert_header(http::header::RETRY_AFTER, v);
            }
        }
        result
    }
}

/// The signed-in user, or `None`. Never fails for a signed-out visitor.
#[server(endpoint = "whoami")]
pub async fn whoami() -> Result<Option<UserView>, AppError> {
    use crate::services::users::load_user_view;
    let run = async {
        let c = ctx::ctx().await?;
        match c.user().await? {
            Some(user) => Ok(Some(load_user_view(&c.state.store, &user).await?)),
            None => Ok(None),
        }
    };
    ctx::finish(run.await)
}

/// `next`, if it is a path on this site to go back to after sign-in: one leading `/`
/// (`//host` and `/\host` lead elsewhere), nothing a browser strips or rewrites
/// (whitespace, control characters, backslashes), and not the sign-in itself.
pub fn return_path(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_whitespace() || c.is_control())
        && !next.starts_with("/login")
        && !next.starts_with("/api/");
    ok.then_some(next)
}

/// Percent-encodes everything but unreserved characters and `/`, so that the value is one
/// query parameter whatever it holds (the sign-in page's `next`, here and on the way to
/// an identity provider).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[server(endpoint = "login")]
pub async fn login(
    username: String,
    password: String,
    // The page a signed-out visitor was sent here from.
    #[server(default)] next: String,
) -> Result<(), AppError> {
    use crate::services::users::sign_in;
    let run = async {
        let c = ctx::ctx().await?;
        if !c.state.sign_in.local_accounts {
            return Err(AppError::field(
                "password",
                "Sign-in with a password is switched off here. Use your organisation's sign-in.",
            ));
        }
        let user = sign_in(
            &c.state.store,
            &c.state.limiter,
            &c.state.metrics,
            &username,
            &password,
            c.client_ip,
        )
        .await?;
        c.start_session(&user).await?;
        leptos_axum::redirect(if user.must_change_password {
            "/account/password"
        } else {
            return_path(&next).unwrap_or("/")
        });
        Ok(())
    };
    ctx::finish(run.await)
}

#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        if let Some(user) = c.user().await? {
            tracing::info!(user = %user.username, "sign-out");
        }
        // After a single sign-on, sign-out continues at the provider so that its session
        // ends too; it sends the browser back to the sign-in page.
        let end_session = c
            .session
            .get::<String>(crate::auth::SESSION_END_SESSION_URL)
            .await
            .ok()
            .flatten();
        c.end_session().await?;
        leptos_axum::redirect(end_session.as_deref().unwrap_or("/login"));
        Ok(())
    };
    ctx::finish(run.await)
}

#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    confirm_password: String,
) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let user = c.user().await?.ok_or(AppError::Unauthenticated)?;
        crate::services::users::change_password(
            &c.state.store,
            &user,
            &current_password,
            &new_password,
            &confirm_password,
            c.client_ip,
        )
        .await?;
        // A changed password ends every other session (the epoch moved on) and starts
        // this one again under a new id, like a sign-in.
        let user = c
            .state
            .store
            .get_user(&user.id)
            .await?
            .ok_or(AppError::Unauthenticated)?;
        c.start_session(&user).await?;
        flash::done(
            &c,
            "Password changed; your other sessions have ended.",
            Some("/"),
        )
        .await?;
        Ok(())
    };
    ctx::finish(run.await)
}

#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::users::list_users(&c.state.store, &actor).await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "create_user")]
pub async fn create_user(
    username: String,
    display_name: String,
    password: String,
    role: String,
    scope_kind: String,
    scope_target: String,
    must_change_password: Option<String>,
) -> Result<String, AppError> {
    use crate::services::users;
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        users::create_user(
            &c.state.store,
            &actor,
            users::CreateUserInput {
                username: &username,
                display_name: &display_name,
                password: &password,
                role: &role,
                scope_kind: &scope_kind,
                scope_target: &scope_target,
                must_change_password: must_change_password.is_some(),
            },
        )
        .await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "add_role")]
pub async fn add_role(
    user_id: String,
    role: String,
    scope_kind: String,
    scope_target: String,
) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::users::add_role(
            &c.state.store,
            &actor,
            &user_id,
            &role,
            &scope_kind,
            &scope_target,
        )
        .await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "remove_role")]
pub async fn remove_role(assignment_id: String) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::users::remove_role(&c.state.store, &actor, &assignment_id).await?;
        flash::done(&c, "Role removed; access it alone allowed has ended.", None).await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "set_user_disabled")]
pub async fn set_user_disabled(user_id: String, disabled: String) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        let disabled = match disabled.as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(AppError::field("disabled", "Choose true or false.")),
        };
        crate::services::users::set_disabled(&c.state.store, &actor, &user_id, disabled).await?;
        let message = if disabled {
            "Account disabled; its sessions, access and waiting requests have ended."
        } else {
            "Account enabled."
        };
        flash::done(&c, message, None).await
    };
    ctx::finish(run.await)
}

/// An administrator sets a temporary password; the user must change it at the next
/// sign-in, and every session of theirs ends.
#[server(endpoint = "reset_password")]
pub async fn reset_password(user_id: String, password: String) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::users::reset_password(&c.state.store, &actor, &user_id, &password).await
    };
    ctx::finish(run.await)
}

#[cfg(test)]
mod tests {
    use super::return_path;

    #[test]
    fn only_paths_of_this_site_are_gone_back_to() {
        for ok in ["/requests/abc", "/jit?tab=all", "/admin/notifications"] {
            assert_eq!(return_path(ok), Some(ok));
        }
        for bad in [
            "",
            "requests",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/ok\r\nSet-Cookie: x=1",
            "/login?next=/x",
            "/api/logout",
        ] {
            assert_eq!(return_path(bad), None, "{bad:?}");
        }
    }
}
