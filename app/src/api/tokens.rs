//! Server functions of the API tokens page: create (the secret is shown once), list,
//! revoke; and, for administrators of everything, every user's tokens in force, each
//! revocable. Nobody else sees or touches another user's tokens.
//!
//! A new token's secret goes back in the answer to the hydrated page. A plain HTML form
//! post (no JavaScript) is answered with a redirect, so for it alone the secret waits in
//! the session until the page that follows reads and removes it; it never sits in a URL,
//! and the hydrated path never writes it to the session table.

use crate::error::AppError;
use crate::model::{CreatedToken, TokenInfo, UserTokenInfo};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
const NEW_TOKEN_KEY: &str = "new_api_token";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPage {
    pub tokens: Vec<TokenInfo>,
    /// The token created just before, shown this once.
    pub new_token: Option<String>,
}

#[server(endpoint = "create_api_token")]
pub async fn create_api_token(
    name: String,
    #[server(default)] expires_days: String,
) -> Result<CreatedToken, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let created =
            crate::services::tokens::create(&c.state.store, &actor, &name, &expires_days).await?;
        c.keep_for_next_page(NEW_TOKEN_KEY, &created.token).await?;
        Ok(created)
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "list_api_tokens")]
pub async fn list_api_tokens() -> Result<TokenPage, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let tokens = crate::services::tokens::list(&c.state.store, &actor).await?;
        let new_token = c.take_kept::<String>(NEW_TOKEN_KEY, |_| true).await?;
        Ok(TokenPage { tokens, new_token })
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "revoke_api_token")]
pub async fn revoke_api_token(id: String) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::tokens::revoke(&c.state.store, &actor, &id).await?;
        super::flash::done(
            &c,
            "API token revoked; whatever uses it is refused from now on.",
            None,
        )
        .await
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "list_all_api_tokens")]
pub async fn list_all_api_tokens() -> Result<Vec<UserTokenInfo>, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::tokens::list_all_live(&c.state.store, &actor).await
    };
    super::ctx::finish(run.await)
}
