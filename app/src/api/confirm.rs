//! The confirmation page's read: it names the object an action that cannot be undone
//! would act on, loaded here rather than taken from the URL, and says whether the
//! services would let the caller do it. The action itself is the page's own form, posted
//! to the action's server function, which decides again.

use crate::error::AppError;
use crate::model::ConfirmInfo;
use leptos::prelude::*;

#[server(endpoint = "load_confirm")]
pub async fn load_confirm(what: String, id: String) -> Result<ConfirmInfo, AppError> {
    use crate::model::ask;
    use crate::services::{jit, requests, tokens, users};
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let forbidden = || Some(AppError::Forbidden.to_string());
        let ((question, detail), refusal) = match what.as_str() {
            ask::VM => {
                let row = jit::vm_summary(store, &actor, &id).await?;
                let may = jit::capabilities(&actor, &row.vm).manage;
                (
                    ask::remove_vm(&row.vm.name),
                    (!may).then(forbidden).flatten(),
                )
            }
            ask::POLICY => {
                let row = jit::vm_summary(store, &actor, &id).await?;
                let may = jit::capabilities(&actor, &row.vm).configure;
                let policy = store.get_policy(&row.vm.id).await?.ok_or_else(|| {
                    AppError::NotFound(format!("A JIT policy of {}", row.vm.name))
                })?;
                let rows = super::jit::views::policy_rows(&policy);
                let ports = ask::ports(
                    rows.iter()
                        .filter(|r| r.enabled)
                        .map(|r| (r.port.clone(), r.protocol.as_str())),
                );
                (
                    ask::remove_policy(&row.vm.name, &ports),
                    (!may).then(forbidden).flatten(),
                )
            }
            ask::REVOKE | ask::DENY => {
                let r = requests::get(store, &actor, &id).await?;
                let can_decide = requests::may_decide(store, &actor, &r).await?;
                let v = super::jit::views::request_view(&actor, r);
                let over = v
                    .status_is_final()
                    .then(|| format!("This request is {} already.", v.status_label));
                let ports = ask::ports(
                    v.ports
                        .iter()
                        .map(|p| (p.port.to_string(), p.protocol.as_str())),
                );
                if what == ask::REVOKE {
                    let refusal = over.or_else(|| (!v.can_end).then(forbidden).flatten());
                    (ask::revoke(&v.requester, &ports, &v.vm_name), refusal)
                } else {
                    let refusal = over.or_else(|| (!can_decide).then(forbidden).flatten());
                    (ask::deny(&v.requester, &ports, &v.vm_name), refusal)
                }
            }
            ask::ROLE => {
                let found = users::list_users(store, &actor)
                    .await?
                    .into_iter()
                    .find_map(|u| {
                        let username = u.username;
                        u.roles
                            .into_iter()
                            .find(|r| r.id == id && r.via_group.is_none())
                            .map(|r| (username, r))
                    });
                let (username, r) =
                    found.ok_or_else(|| AppError::NotFound("The role".to_owned()))?;
                (ask::remove_role(&username, &r.role, &r.scope), None)
            }
            ask::TOKEN => {
                // An expired token may be revoked too: until then it keeps its name taken.
                let own = tokens::list(store, &actor)
                    .await?
                    .into_iter()
                    .find(|t| t.id == id && t.revoked_at.is_none());
                let found = match own {
                    Some(t) => Some((t, None)),
                    // Another user's token: only administrators of everything see those.
                    None => match tokens::list_all_live(store, &actor).await {
                        Ok(all) => all
                            .into_iter()
                            .find(|u| u.token.id == id)
                            .map(|u| (u.token, Some(u.username))),
                        Err(AppError::Forbidden) => None,
                        Err(e) => return Err(e),
                    },
                };
                let (t, owner) =
                    found.ok_or_else(|| AppError::NotFound("The API token".to_owned()))?;
                (
                    ask::revoke_token(&t.name, &t.prefix, owner.as_deref()),
                    None,
                )
            }
            ask::CHANNEL => {
                let channel = crate::services::notify::get_channel(store, &actor, &id).await?;
                (ask::remove_channel(&channel.name), None)
            }
            _ => return Err(AppError::NotFound("What to confirm".to_owned())),
        };
        Ok(ConfirmInfo {
            question,
            detail,
            refusal,
        })
    };
    super::ctx::finish(run.await)
}
