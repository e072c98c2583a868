//! Feedback after an action: a short success message carried to the page the action leads
//! to and shown there once, hydrated or not. Without JavaScript a form post ends in a
//! redirect and a fresh page, so the message cannot live in the browser: it waits in the
//! session under a one-time id that the redirect puts in the URL (`?flash=ID`), and the
//! page's header takes it out while rendering. A reload, or the back button, finds it gone.
//! Errors keep their own path (beside the field, or where the action was taken).

use crate::error::AppError;
use leptos::prelude::*;

/// The query parameter that names a waiting message.
pub const PARAM: &str = "flash";

/// `path` if a browser reads it as a path of this site, for links and redirects built
/// from what a visitor sent.
pub fn local_path(path: &str) -> Option<String> {
    // What a browser would read as another site, once it drops what it ignores.
    if !path.starts_with('/')
        || path.starts_with("//")
        || path.contains('\\')
        || path.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return None;
    }
    Some(path.to_owned())
}

#[cfg(feature = "ssr")]
mod server {
    use super::PARAM;
    use crate::api::ctx::session_error;
    use crate::error::AppResult;
    use std::collections::BTreeMap;

    const KEY: &str = "flash";
    /// Messages a session keeps at most (an action whose page was never shown leaves one).
    const KEEP: usize = 8;

    /// The path of a same-site `Referer` (`/requests?page=2`), without an earlier message's
    /// parameter; `None` for anything else.
    pub fn referer_path(referer: &str) -> Option<String> {
        let rest = referer.split_once("://").map(|(_, r)| r)?;
        let path = super::local_path(&rest[rest.find('/')?..])?;
        // A confirmation page asked on the way: the message belongs to the page it came from.
        if let Some(query) = path.strip_prefix("/confirm?") {
            return Some(crate::model::ask::back_from_query(query));
        }
        Some(without_param(&path))
    }

    fn without_param(path: &str) -> String {
        let (base, query) = match path.split_once('?') {
            Some((b, q)) => (b, q),
            None => return path.to_owned(),
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(PARAM))
            .collect();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    }

    /// `path` with the message's id added to its query.
    pub fn with_param(path: &str, id: &str) -> String {
        let path = without_param(path);
        let sep = if path.contains('?') { '&' } else { '?' };
        format!("{path}{sep}{PARAM}={id}")
    }

    /// Keeps `message` for the next page and sends the browser there: to `to`, or back to
    /// the page the action was taken on.
    pub async fn done(
        c: &crate::api::ctx::Ctx,
        message: impl Into<String>,
        to: Option<&str>,
    ) -> AppResult<()> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let mut waiting: BTreeMap<String, (i64, String)> = c
            .session
            .get(KEY)
            .await
            .map_err(session_error)?
            .unwrap_or_default();
        let now = c.state.store.now_ms();
        waiting.insert(id.clone(), (now, message.into()));
        while waiting.len() > KEEP {
            let oldest = waiting
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                waiting.remove(&k);
            }
        }
        c.session
            .insert(KEY, waiting)
            .await
            .map_err(session_error)?;
        let back = || {
            leptos::prelude::use_context::<http::request::Parts>()
                .and_then(|p| {
                    p.headers
                        .get(http::header::REFERER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(referer_path)
                })
                .unwrap_or_else(|| "/".to_owned())
        };
        let target = match to {
            Some(path) => path.to_owned(),
            None => back(),
        };
        leptos_axum::redirect(&with_param(&target, &id));
        Ok(())
    }

    /// Takes the message named `id` out of the session.
    pub async fn take(c: &crate::api::ctx::Ctx, id: &str) -> AppResult<Option<String>> {
        let mut waiting: BTreeMap<String, (i64, String)> = c
            .session
            .get(KEY)
            .await
            .map_err(session_error)?
            .unwrap_or_default();
        let Some((_, message)) = waiting.remove(id) else {
            return Ok(None);
        };
        c.session
            .insert(KEY, waiting)
            .await
            .map_err(session_error)?;
        Ok(Some(message))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_message_returns_to_the_same_site_page_it_came_from() {
            assert_eq!(
                referer_path("https://portal.example/requests?page=2&flash=ab").as_deref(),
                Some("/requests?page=2")
            );
            assert_eq!(
                referer_path("http://127.0.0.1:3000/vms/x").as_deref(),
                Some("/vms/x")
            );
            assert_eq!(referer_path("https://portal.example//evil.example/"), None);
            assert_eq!(referer_path("https://portal.example/\\evil"), None);
            assert_eq!(referer_path("https://portal.example/\t/evil.example"), None);
            assert_eq!(referer_path("https://portal.example"), None);
            assert_eq!(with_param("/requests", "ab"), "/requests?flash=ab");
            assert_eq!(
                referer_path("https://portal.example/confirm?what=revoke&id=r1&from=detail")
                    .as_deref(),
                Some("/requests/r1")
            );
            assert_eq!(
                with_param("/jit?tab=configured&flash=old", "ab"),
                "/jit?tab=configured&flash=ab"
            );
        }
    }
}

#[cfg(feature = "ssr")]
pub use server::done;
#[cfg(feature = "ssr")]
pub(crate) use server::referer_path;

/// The message named `id`, once: the page's header shows it.
#[server(endpoint = "take_flash")]
pub async fn take_flash(id: String) -> Result<Option<String>, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        server::take(&c, &id).await
    };
    super::ctx::finish(run.await)
}

/// The message carried to this page, if any: a status line at the top of the content.
#[component]
pub fn Flash() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let message = Resource::new(
        move || query.with(|q| q.get(PARAM)),
        |id| async move {
            match id {
                // A lost message only loses the feedback, never the page.
                Some(id) => take_flash(id).await.ok().flatten(),
                None => None,
            }
        },
    );
    // The Suspend renders one element whether or not there is a message, so that the
    // server's HTML and the hydrating client agree on the markers around it.
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let m = message.await;
                view! {
                    <div class="flash-area">
                        {m.map(|m| view! {
                            <div class="alert success" role="status" data-testid="flash">{m}</div>
                        })}
                    </div>
                }
            })}
        </Transition>
    }
}
