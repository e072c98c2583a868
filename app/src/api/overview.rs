//! The server function of the Overview page: a thin adapter over `services::overview`,
//! which decides every section and every row by the caller's roles.

use crate::error::AppError;
use crate::model::RequestView;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

/// The requests waiting for the viewer's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingView {
    pub first: Vec<RequestView>,
    pub count: usize,
    pub more: bool,
}

/// The viewer's own open requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessView {
    pub active: Vec<RequestView>,
    pub scheduled: Vec<RequestView>,
    pub pending: Vec<RequestView>,
    pub more: bool,
}

/// A VM whose agent needs an administrator: silent (since when) or failing (the error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentAlert {
    pub vm_id: String,
    pub vm_name: String,
    pub group: String,
    /// Silent: when the agent was last heard from.
    pub silent_since: Option<i64>,
    /// Not silent: the enforcement error it reported.
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialView {
    pub request_id: String,
    pub vm_id: String,
    pub vm_name: String,
    pub requester: String,
    pub decided_by: String,
    pub decided_at: i64,
    pub comment: String,
}

/// What needs an administrator among the VMs they administer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TroubleView {
    pub silent: Vec<AgentAlert>,
    pub more_silent: bool,
    pub errors: Vec<AgentAlert>,
    pub more_errors: bool,
    pub denials: Vec<DenialView>,
    pub more_denials: bool,
}

/// A first step of a new install: `add_vm`, `enable_jit`, `invite_users`, `connect_sso`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetupStepView {
    pub step: String,
    pub done: bool,
}

/// Every section of the Overview the viewer gets; a section they have no part in is None
/// (the checklist: empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverviewData {
    pub waiting: Option<WaitingView>,
    pub access: Option<AccessView>,
    pub trouble: Option<TroubleView>,
    pub setup: Vec<SetupStepView>,
}

#[cfg(feature = "ssr")]
mod views {
    use super::{AgentAlert, DenialView};
    use crate::store::{AgentNews, Denial};

    pub fn silent(a: AgentNews) -> AgentAlert {
        AgentAlert {
            vm_id: a.vm_id,
            vm_name: a.vm_name,
            group: a.vm_group,
            silent_since: a.last_seen,
            error: String::new(),
        }
    }

    pub fn failing(a: AgentNews) -> AgentAlert {
        AgentAlert {
            vm_id: a.vm_id,
            vm_name: a.vm_name,
            group: a.vm_group,
            silent_since: None,
            error: a.error,
        }
    }

    pub fn denial(d: Denial) -> DenialView {
        DenialView {
            request_id: d.request_id,
            vm_id: d.vm_id,
            vm_name: d.vm_name,
            requester: d.requester,
            decided_by: d.decided_by,
            decided_at: d.decided_at,
            comment: d.comment,
        }
    }
}

#[server(endpoint = "overview")]
pub async fn overview() -> Result<OverviewData, AppError> {
    use super::jit::views::request_view;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let sso_configured = !c.state.sign_in.providers.is_empty();
        let o = crate::services::overview::overview(&c.state.store, &actor, sso_configured).await?;
        let requests = |list: Vec<crate::store::StoredRequest>| -> Vec<RequestView> {
            list.into_iter().map(|r| request_view(&actor, r)).collect()
        };
        Ok(OverviewData {
            waiting: o.waiting.map(|w| WaitingView {
                first: requests(w.first),
                count: w.count,
                more: w.more,
            }),
            access: o.access.map(|a| AccessView {
                active: requests(a.active),
                scheduled: requests(a.scheduled),
                pending: requests(a.pending),
                more: a.more,
            }),
            trouble: o.trouble.map(|t| TroubleView {
                silent: t.silent.into_iter().map(views::silent).collect(),
                more_silent: t.more_silent,
                errors: t.errors.into_iter().map(views::failing).collect(),
                more_errors: t.more_errors,
                denials: t.denials.into_iter().map(views::denial).collect(),
                more_denials: t.more_denials,
            }),
            setup: o
                .setup
                .into_iter()
                .map(|(step, done)| SetupStepView {
                    step: step.as_str().to_owned(),
                    done,
                })
                .collect(),
        })
    };
    super::ctx::finish(run.await)
}
