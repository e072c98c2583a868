//! Server functions for single sign-on: what the sign-in page offers, and the group rules
//! administrators keep. The OpenID Connect redirects themselves are plain routes in the
//! server crate.

use crate::error::AppError;
use crate::model::{GroupRuleView, SignInOptions};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::ctx;

/// How visitors may sign in. Public: the sign-in page needs it before anyone signs in.
#[server(endpoint = "sign_in_options")]
pub async fn load_sign_in_options() -> Result<SignInOptions, AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        Ok((*c.state.sign_in).clone())
    };
    ctx::finish(run.await)
}

#[server(endpoint = "list_group_rules")]
pub async fn list_group_rules() -> Result<Vec<GroupRuleView>, AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::sso::list_group_rules(&c.state.store, &actor).await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "add_group_rule")]
pub async fn add_group_rule(
    provider: String,
    group: String,
    role: String,
    scope_kind: String,
    scope_target: String,
) -> Result<String, AppError> {
    use crate::services::sso;
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        let providers: Vec<String> = c
            .state
            .sign_in
            .providers
            .iter()
            .map(|p| p.id.clone())
            .collect();
        sso::add_group_rule(
            &c.state.store,
            &actor,
            &providers,
            sso::GroupRuleInput {
                provider: &provider,
                group: &group,
                role: &role,
                scope_kind: &scope_kind,
                scope_target: &scope_target,
            },
        )
        .await
    };
    ctx::finish(run.await)
}

#[server(endpoint = "remove_group_rule")]
pub async fn remove_group_rule(rule_id: String) -> Result<(), AppError> {
    let run = async {
        let c = ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::sso::remove_group_rule(&c.state.store, &actor, &rule_id).await
    };
    ctx::finish(run.await)
}
