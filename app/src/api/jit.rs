//! Server functions of the JIT portal: VMs, policies, requests, the activity log.

// A server function takes one argument per form field, and the macro copies them to the
// generated client function, where an item attribute does not reach.
#![allow(clippy::too_many_arguments)]

use crate::domain::jit::PortRuleInput;
use crate::error::AppError;
use crate::model::{LogPage, PolicyForm, RequestBlade, RequestView, VmDetail, VmPage};
use leptos::prelude::*;

#[cfg(feature = "ssr")]
pub mod views {
    //! Store rows to wire views.

    use crate::domain::jit::{JitPolicy, Os, PortRule};
    use crate::model::*;
    use crate::services::Actor;
    use crate::store::{StoredRequest, VmSummary};

    pub fn rule_view(r: &PortRule) -> RuleView {
        RuleView {
            port: r.port.to_string(),
            protocol: r.protocol.as_str().to_owned(),
            allowed_sources: match &r.allowed_sources {
                crate::domain::jit::AllowedSources::PerRequest => String::new(),
                list => list.to_string(),
            },
            max_minutes: (r.max_duration.secs() / 60).to_string(),
            justification_required: r.justification_required,
            approval_required: r.approval_required,
            approval_minutes: (r.approval_timeout.secs() / 60).to_string(),
            approvals_required: r.approvals_required.to_string(),
            lead_days: r.max_lead.days().to_string(),
            widest_v4: r.widest_source.v4.to_string(),
            widest_v6: r.widest_source.v6.to_string(),
            enabled: true,
        }
    }

    pub fn default_rows(os: Os) -> Vec<RuleView> {
        os.default_ports()
            .iter()
            .map(|p| RuleView {
                port: p.to_string(),
                enabled: true,
                ..RuleView::blank()
            })
            .collect()
    }

    pub fn policy_rows(p: &JitPolicy) -> Vec<RuleView> {
        p.rules.iter().map(rule_view).collect()
    }

    /// A row of the policy form as it was posted, to show it again as typed.
    pub fn input_row(r: &crate::domain::jit::PortRuleInput) -> RuleView {
        RuleView {
            port: r.port.clone(),
            protocol: r.protocol.clone(),
            allowed_sources: r.allowed_sources.clone(),
            max_minutes: r.max_minutes.clone(),
            justification_required: r.justification_required.is_some(),
            approval_required: r.approval_required.is_some(),
            approval_minutes: r.approval_minutes.clone(),
            approvals_required: r.approvals_required.clone(),
            lead_days: r.lead_days.clone(),
            widest_v4: r.widest_v4.clone(),
            widest_v6: r.widest_v6.clone(),
            enabled: r.enabled.is_some(),
        }
    }

    pub use crate::services::jit::SILENT_AFTER_MS;

    fn enforcement(s: &VmSummary) -> crate::domain::enforcement::Status {
        let vm = &s.vm;
        let facts = crate::domain::enforcement::AgentFacts {
            enrolled: vm.agent_id.is_some(),
            last_seen: vm.agent_last_seen,
            error: &vm.agent_error,
            generation: vm.generation,
            applied_generation: vm.agent_applied_generation,
            configured: s.has_policy,
            open_grants: s.active_grants.len(),
            exposed_ports: &vm.exposed_ports,
        };
        crate::domain::enforcement::of(&facts, chrono::Utc::now().timestamp_millis(), format_utc)
    }

    /// [`vm_row`] with what `actor` may do with the VM (the services' `permits`).
    pub fn vm_row_for(actor: &Actor, s: VmSummary) -> VmRow {
        let may = crate::services::jit::capabilities(actor, &s.vm);
        let configured = s.has_policy;
        let mut row = vm_row(s);
        row.may = RowPermissions {
            manage: may.manage,
            configure: may.configure,
            request: may.request && configured,
            view_log: may.view_log,
        };
        row
    }

    pub fn vm_row(s: VmSummary) -> VmRow {
        let status = enforcement(&s);
        VmRow {
            agent_status: status.text,
            status_level: status.level.as_str().to_owned(),
            agent_enrolled: s.vm.agent_id.is_some(),
            agent_last_seen: s.vm.agent_last_seen,
            // Known to [`vm_row_for`], which knows the viewer.
            may: Default::default(),
            id: s.vm.id,
            name: s.vm.name,
            group: s.vm.group,
            os: s.vm.os,
            addresses: s.vm.addresses,
            exposed_ports: s.vm.exposed_ports,
            has_policy: s.has_policy,
            approved_last_7d: s.approved_last_7d,
            last_access_at: s.last_access_at,
            last_user: s.last_user,
            grants: s
                .active_grants
                .into_iter()
                .map(|(port, protocol, source, end_at)| GrantView {
                    port,
                    protocol,
                    source,
                    end_at,
                })
                .collect(),
        }
    }

    pub fn request_view(actor: &Actor, r: StoredRequest) -> RequestView {
        use crate::domain::enforcement::{Grant, Level, grant};
        let (enforcement, level) =
            match grant(r.vm_has_agent, r.enforced_at.is_some(), &r.vm_agent_error) {
                Grant::NoAgent => ("Not enforced: no agent", Level::Warning),
                Grant::Applied => ("Active", Level::Ok),
                Grant::Failed => ("Not applied: enforcement error", Level::Error),
                Grant::Waiting => ("Initiated", Level::Info),
            };
        let can_end = !r.status.is_final() && crate::services::requests::may_end(actor, &r);
        RequestView {
            id: r.id,
            vm_id: r.vm_id,
            vm_name: r.vm_name,
            requester: r.requester,
            source: r.source,
            justification: r.justification,
            status: r.status.as_str().to_owned(),
            status_label: match (r.status, r.planned_start_at) {
                (crate::domain::request::RequestStatus::Approved, Some(_)) => "scheduled".into(),
                (status, _) => status.label().to_owned(),
            },
            duration_minutes: r.duration_secs / 60,
            created_at: r.created_at,
            start_at: r.start_at,
            planned_start_at: r.planned_start_at,
            end_at: r.end_at,
            decided_by: r.decided_by,
            comment: r.decision_comment,
            ports: r
                .ports
                .into_iter()
                .map(|p| PortView {
                    port: p.port,
                    protocol: p.protocol,
                    status: p.status.as_str().to_owned(),
                    reason: p.status_reason,
                    end_at: p.end_at,
                    enforcement: if p.status == crate::domain::request::PortStatus::Active {
                        enforcement.to_owned()
                    } else {
                        String::new()
                    },
                    enforcement_level: level.as_str().to_owned(),
                })
                .collect(),
            can_end,
            approvals: r.approvals,
            approvals_required: r.approvals_required,
        }
    }
}

pub const PAGE_SIZE: i64 = 25;

#[server(endpoint = "list_vms")]
pub async fn list_vms(
    #[server(default)] tab: String,
    #[server(default)] q: String,
    #[server(default)] sort: String,
    #[server(default)] desc: bool,
    #[server(default)] page: i64,
) -> Result<VmPage, AppError> {
    use crate::services::jit;
    use crate::store::VmListQuery;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let q = crate::domain::vm::parse_search(&q).map_err(|m| AppError::field("q", m))?;
        let page = page.clamp(1, 1_000_000);
        let query = VmListQuery {
            tab: jit::parse_tab(&tab),
            search: q,
            sort,
            desc,
            offset: (page - 1) * PAGE_SIZE,
            limit: PAGE_SIZE,
            scope: Default::default(),
            only_id: None,
        };
        let tab = query.tab;
        let (rows, counts) = jit::list_vms(&c.state.store, &actor, query).await?;
        let rows = rows
            .into_iter()
            .map(|s| views::vm_row_for(&actor, s))
            .collect();
        Ok(VmPage {
            rows,
            total: counts.of(tab),
            counts: crate::model::TabCountsView {
                configured: counts.configured,
                recommended: counts.recommended,
                not_configured: counts.not_configured,
                unsupported: counts.unsupported,
            },
            page,
            page_size: PAGE_SIZE,
            can_add_vm: jit::may_add_vms(&actor),
            can_configure: jit::may_somewhere(&actor, crate::domain::Action::ConfigurePolicy),
            can_request: jit::may_somewhere(&actor, crate::domain::Action::RequestAccess),
        })
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "get_vm")]
pub async fn get_vm(id: String) -> Result<VmDetail, AppError> {
    use crate::services::{jit, requests};
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        let vm = views::vm_row_for(&actor, jit::vm_summary(store, &actor, &id).await?);
        let may = vm.may;
        let vm_id = vm.id.clone();
        let policy = store.get_policy(&vm_id).await?;
        let now = store.now_ms();
        let from = now - 7 * 24 * 3600 * 1000;
        let windows = store
            .access_windows(&vm_id, from, now + crate::timeline::AHEAD_MS)
            .await?;
        // The range reaches as far ahead as the latest booked window.
        let to = windows.iter().map(|w| w.1).max().unwrap_or(now).max(now);
        let reqs = requests::vm_requests(store, &actor, &vm_id).await?;
        Ok(VmDetail {
            vm,
            policy: policy.as_ref().map(views::policy_rows).unwrap_or_default(),
            requests: reqs
                .into_iter()
                .map(|r| views::request_view(&actor, r))
                .collect(),
            timeline_svg: crate::timeline::timeline_svg(&windows, from, now, to),
            can_manage: may.manage,
            can_configure: may.configure,
            can_request: policy.is_some() && may.request,
        })
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "save_vm")]
pub async fn save_vm(
    #[server(default)] id: String,
    name: String,
    group: String,
    #[server(default)] addresses: String,
    os: String,
    #[server(default)] exposed_ports: String,
) -> Result<String, AppError> {
    use crate::domain::vm::VmSpec;
    use crate::services::jit;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let spec = VmSpec::parse(&name, &group, &addresses, &os, &exposed_ports)?;
        if id.is_empty() {
            let id = jit::create_vm(&c.state.store, &actor, spec).await?;
            let to = format!("/vms/{id}");
            super::flash::done(&c, format!("VM {} added.", name.trim()), Some(&to)).await?;
            Ok(id)
        } else {
            jit::update_vm(&c.state.store, &actor, &id, spec).await?;
            super::flash::done(&c, format!("VM {} saved.", name.trim()), None).await?;
            Ok(id)
        }
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "delete_vm")]
pub async fn delete_vm(id: String) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::jit::delete_vm(&c.state.store, &actor, &id).await?;
        super::flash::done(
            &c,
            "VM removed; its access ended and its requests were closed.",
            Some("/jit?tab=all"),
        )
        .await?;
        Ok(())
    };
    super::ctx::finish(run.await)
}

/// The policy form as a plain form post (no JavaScript) left it when it asked for one more
/// row or was refused: kept in the session for the form's next rendering, so that what was
/// typed stays.
#[cfg(feature = "ssr")]
#[derive(serde::Serialize, serde::Deserialize)]
struct PolicyDraft {
    vm_ids: Vec<String>,
    rows: Vec<crate::model::RuleView>,
    replace_differing: bool,
}

#[cfg(feature = "ssr")]
const POLICY_DRAFT_KEY: &str = "policy_draft";

/// Rows the policy form may grow to: far more ports than a VM manages, and a bound on what
/// a draft keeps in the session.
pub const MAX_POLICY_ROWS: usize = 64;

#[server(endpoint = "load_policy_form")]
pub async fn load_policy_form(
    #[server(default)] vm_ids: Vec<String>,
) -> Result<PolicyForm, AppError> {
    use crate::domain::jit::Os;
    use crate::services::jit;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        // Taken whatever page asks, even one that fails, so that it never outlives the next
        // form; used only by the form of the same VMs (in any order, named any number of
        // times).
        let same_vms = |d: &PolicyDraft| {
            let set = |ids: &[String]| {
                ids.iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>()
            };
            set(&d.vm_ids) == set(&vm_ids)
        };
        let draft = c
            .take_kept::<PolicyDraft>(POLICY_DRAFT_KEY, |_| true)
            .await?
            .filter(same_vms);
        let current = jit::policies_for_edit(&c.state.store, &actor, &vm_ids).await?;
        let all_linux = current
            .iter()
            .all(|(vm, _)| Os::parse(&vm.os) == Ok(Os::Linux));
        let differing = jit::differing_policies(&current, None).unwrap_or_default();
        // Start from the VMs' current rules when they agree; when they differ, from the
        // first policy found, with the differences spelled out above the form.
        let start = current.iter().find_map(|(_, p)| p.as_ref());
        let mut rows = match start {
            Some(p) => views::policy_rows(p),
            None => views::default_rows(if all_linux { Os::Linux } else { Os::Windows }),
        };
        let mut replace_differing = false;
        if let Some(d) = draft {
            rows = d.rows;
            replace_differing = d.replace_differing;
        }
        Ok(crate::model::PolicyForm {
            replace_differing,
            existing: current.len() == 1 && current[0].1.is_some(),
            vms: current
                .into_iter()
                .map(|(vm, _)| (vm.id, vm.name))
                .collect(),
            rows,
            differing,
        })
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "enable_jit")]
pub async fn enable_jit(
    #[server(default)] vm_ids: Vec<String>,
    #[server(default)] rules: Vec<PortRuleInput>,
    #[server(default)] replace_differing: Option<String>,
    // The plain form's "Add port" button: no save, the form again with one more row.
    #[server(default)] add_row: Option<String>,
) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let draft = |extra: Option<crate::model::RuleView>| PolicyDraft {
            vm_ids: vm_ids.clone(),
            rows: rules.iter().map(views::input_row).chain(extra).collect(),
            replace_differing: replace_differing.is_some(),
        };
        let fits = rules.len() <= MAX_POLICY_ROWS && rules.iter().all(PortRuleInput::fits);
        if add_row.is_some() {
            // Only a form its user may save is kept, and only as much as a form holds.
            let vms =
                crate::services::jit::policies_for_edit(&c.state.store, &actor, &vm_ids).await?;
            if rules.len() >= MAX_POLICY_ROWS {
                return Err(AppError::field(
                    "rules",
                    format!("A policy form has at most {MAX_POLICY_ROWS} port rows."),
                ));
            }
            if !fits {
                return Err(AppError::field(
                    "rules",
                    format!(
                        "A port row holds at most {} characters.",
                        PortRuleInput::MAX_TEXT
                    ),
                ));
            }
            let draft = draft(Some(crate::model::RuleView::added()));
            c.keep_for_next_page(POLICY_DRAFT_KEY, &draft).await?;
            let query = vms
                .iter()
                .map(|(vm, _)| &vm.id)
                .map(|id| format!("vm={}", super::encode_query_value(id)))
                .collect::<Vec<_>>()
                .join("&");
            // To the new row's first field.
            leptos_axum::redirect(&format!(
                "/jit/configure?{query}#rule-{}-port",
                draft.rows.len() - 1
            ));
            return Ok(());
        }
        let saved = crate::services::jit::enable_jit(
            &c.state.store,
            &actor,
            &vm_ids,
            &rules,
            replace_differing.is_some(),
        )
        .await;
        // Refused, a plain form comes back as it was posted, each message beside its field.
        if saved.is_err() && fits {
            c.keep_for_next_page(POLICY_DRAFT_KEY, &draft(None)).await?;
        }
        saved?;
        c.state.expiry_wake.notify_one();
        let n = vm_ids.len();
        let message = format!(
            "JIT policy saved on {n} VM{}; access that no longer fits it has ended.",
            if n == 1 { "" } else { "s" }
        );
        super::flash::done(&c, message, Some("/jit?tab=configured")).await?;
        Ok(())
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "remove_policy")]
pub async fn remove_policy(vm_id: String) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::jit::remove_policy(&c.state.store, &actor, &vm_id).await?;
        let to = format!("/vms/{vm_id}");
        super::flash::done(
            &c,
            "JIT policy removed: its ports are no longer closed by Portcullis, and its access ended.",
            Some(&to),
        )
        .await?;
        Ok(())
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "load_request_blade")]
pub async fn load_request_blade(
    #[server(default)] vm_ids: Vec<String>,
) -> Result<RequestBlade, AppError> {
    use crate::model::BladeVm;
    use crate::services::jit;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let store = &c.state.store;
        if vm_ids.is_empty() {
            return Err(AppError::field("ports", "Choose at least one VM."));
        }
        let mut vms = Vec::new();
        let mut max_minutes = i64::MAX;
        let mut justification_required = false;
        let chosen = &vm_ids[..vm_ids.len().min(50)];
        let found = jit::visible_vms(store, &actor, chosen, |vm| {
            if jit::capabilities(&actor, vm).request {
                Ok(())
            } else {
                Err(AppError::Forbidden)
            }
        })
        .await?;
        let ids: Vec<String> = found.iter().map(|vm| vm.id.clone()).collect();
        let mut policies = store.get_policies(&ids).await?;
        for vm in found {
            let Some(policy) = policies.remove(&vm.id) else {
                return Err(AppError::Conflict(format!(
                    "{} has no JIT policy.",
                    vm.name
                )));
            };
            for r in &policy.rules {
                max_minutes = max_minutes.min(r.max_duration.secs() / 60);
                justification_required |= r.justification_required;
            }
            vms.push(BladeVm {
                id: vm.id,
                name: vm.name,
                rules: views::policy_rows(&policy),
            });
        }
        Ok(crate::model::RequestBlade {
            vms,
            my_ip: actor.ip.to_string(),
            max_minutes,
            justification_required,
        })
    };
    super::ctx::finish(run.await)
}

/// What became of new requests, one sentence per VM: open, waiting or scheduled.
#[cfg(feature = "ssr")]
async fn requested_message(
    store: &crate::store::Store,
    ids: &[String],
) -> crate::error::AppResult<String> {
    use crate::domain::request::RequestStatus;
    let mut requests = Vec::new();
    for id in ids {
        if let Some(r) = store.get_request(id).await? {
            requests.push(r);
        }
    }
    let mut parts = Vec::new();
    for r in &requests {
        // A VM asked for twice (ports that open at once, ports that wait) names its ports.
        let twice = requests.iter().filter(|o| o.vm_id == r.vm_id).count() > 1;
        let vm = if twice {
            format!("{} ({})", r.vm_name, r.ports_text())
        } else {
            r.vm_name.clone()
        };
        parts.push(match (r.status, r.planned_start_at) {
            (RequestStatus::Active, _) => format!("Access to {vm} is open."),
            (RequestStatus::Approved, Some(start)) => format!(
                "Access to {vm} is scheduled for {}.",
                crate::model::format_utc(start)
            ),
            (RequestStatus::PendingApproval, _) => {
                format!("Your request for {vm} waits for approval.")
            }
            (status, _) => format!("Your request for {vm} is {}.", status.label()),
        });
    }
    Ok(parts.join(" "))
}

#[server(endpoint = "request_access")]
pub async fn request_access(
    #[server(default)] vm_ids: Vec<String>,
    #[server(default)] ports: Vec<String>,
    #[server(default)] source_mode: String,
    #[server(default)] custom_source: String,
    #[server(default)] duration: String,
    #[server(default)] justification: String,
    #[server(default)] start: String,
) -> Result<Vec<String>, AppError> {
    use crate::services::requests::{AccessForm, request_access};
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let ids = request_access(
            &c.state.store,
            &actor,
            AccessForm {
                ports: &ports,
                vm_ids: &vm_ids,
                source_mode: &source_mode,
                custom_source: &custom_source,
                duration_minutes: &duration,
                justification: &justification,
                start: &start,
            },
        )
        .await?;
        c.state.expiry_wake.notify_one();
        let message = requested_message(&c.state.store, &ids).await?;
        super::flash::done(&c, message, Some("/requests")).await?;
        Ok(ids)
    };
    super::ctx::finish(run.await)
}

/// The caller's requests and the requests waiting for their decision, a page of each
/// (50 per page), and whether more pages follow.
#[server(endpoint = "my_requests")]
pub async fn my_requests(
    #[server(default)] page: i64,
    #[server(default)] approvals_page: i64,
) -> Result<(Vec<RequestView>, Vec<RequestView>, bool, bool), AppError> {
    use crate::services::requests;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let mine = requests::my_requests(&c.state.store, &actor, page).await?;
        let queue = requests::approval_queue(&c.state.store, &actor, approvals_page).await?;
        Ok((
            mine.items
                .into_iter()
                .map(|r| views::request_view(&actor, r))
                .collect(),
            queue
                .items
                .into_iter()
                .map(|r| views::request_view(&actor, r))
                .collect(),
            mine.more,
            queue.more,
        ))
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "decide_request")]
pub async fn decide_request(
    id: String,
    decision: String,
    #[server(default)] comment: String,
) -> Result<(), AppError> {
    use crate::services::requests;
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let message = match decision.as_str() {
            "approve" => {
                requests::approve(&c.state.store, &actor, &id, &comment).await?;
                let r = requests::get(&c.state.store, &actor, &id).await?;
                match r.status {
                    crate::domain::request::RequestStatus::PendingApproval => format!(
                        "Approval recorded ({} of {}); the request waits for the others.",
                        r.approvals, r.approvals_required
                    ),
                    crate::domain::request::RequestStatus::Approved => {
                        format!("Approved: {}'s window opens at its start.", r.requester)
                    }
                    _ => format!(
                        "Approved: {}'s access to {} is open.",
                        r.requester, r.vm_name
                    ),
                }
            }
            "deny" => {
                requests::deny(&c.state.store, &actor, &id, &comment).await?;
                "Request denied; the requester is told.".to_owned()
            }
            _ => return Err(AppError::field("decision", "Choose approve or deny.")),
        };
        c.state.expiry_wake.notify_one();
        super::flash::done(&c, message, None).await?;
        Ok(())
    };
    super::ctx::finish(run.await)
}

#[server(endpoint = "revoke_request")]
pub async fn revoke_request(id: String) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::requests::revoke(&c.state.store, &actor, &id).await?;
        super::flash::done(&c, "Access revoked; its ports close now.", None).await
    };
    super::ctx::finish(run.await)
}

/// The query parameter that names the request whose extension failed, after a plain
/// form post (the requests page shows the error in its row).
pub const EXTENDED_PARAM: &str = "extend";

#[server(endpoint = "extend_request")]
pub async fn extend_request(id: String, duration: String) -> Result<(), AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        crate::services::requests::extend(&c.state.store, &actor, &id, &duration).await?;
        let r = crate::services::requests::get(&c.state.store, &actor, &id).await?;
        let until = r.end_at.map(crate::model::format_utc).unwrap_or_default();
        super::flash::done(&c, format!("Access extended until {until}."), None).await
    };
    let result = super::ctx::error_in_row(
        run.await,
        <ExtendRequest as leptos::server_fn::ServerFn>::PATH,
        EXTENDED_PARAM,
        &id,
    );
    super::ctx::finish(result)
}

/// One page of the activity log for the page's filters, with the times in `zone` (an IANA
/// name, the browser's; empty: UTC), the filters' suggestions and the message of each bad
/// filter. A bad filter does not hide the log: the page is read without it. A `guessed`
/// zone (remembered, not chosen) that the server does not know means UTC, unflagged.
#[server(endpoint = "activity")]
pub async fn activity(
    #[server(default)] vm: String,
    #[server(default)] actor: String,
    #[server(default)] action: String,
    #[server(default)] from: String,
    #[server(default)] to: String,
    #[server(default)] page: i64,
    #[server(default)] zone: String,
    #[server(default)] guessed: bool,
) -> Result<LogPage, AppError> {
    use crate::services::activity;
    let run = async {
        let c = super::ctx::ctx().await?;
        let me = c.actor().await?;
        let page = page.clamp(1, crate::store::audit_max_page(PAGE_SIZE));
        let filter = read_log_filter(&vm, &actor, &action, &from, &to, &zone);
        let mut errors = filter.errors;
        if guessed {
            errors.0.retain(|e| e.field != "tz");
        }
        let mut q = filter.query;
        q.offset = (page - 1) * PAGE_SIZE;
        q.limit = PAGE_SIZE;
        let b = activity::browse(&c.state.store, &me, q, SUGGESTIONS).await?;
        if b.unknown_action {
            errors.add(
                "action",
                "No entry has this action: choose one from the list.",
            );
        }
        let chain_message = if b.status.ok {
            b.status.message
        } else {
            format!("{} The log has been tampered with.", b.status.message)
        };
        Ok(LogPage {
            shown_at: b
                .entries
                .iter()
                .map(|e| filter.zone.format(e.content.at))
                .collect(),
            rows: b.entries.into_iter().map(|e| e.content).collect(),
            total: b.total,
            page,
            page_size: PAGE_SIZE,
            chain_ok: b.status.ok,
            chain_message,
            zone: filter.zone.name(),
            zone_offset: filter.zone.offset_now(),
            errors,
            vms: b.suggestions.vms,
            actors: b.suggestions.actors,
            actions: b.suggestions.actions,
        })
    };
    super::ctx::finish(run.await)
}

/// The activity log's VM names (`field` "vm") or user names ("actor") that start with what
/// is typed in that filter, for its suggestions to follow the typing. Double quotes around
/// the text are not part of a name.
#[server(endpoint = "activity_suggestions")]
pub async fn activity_suggestions(
    #[server(default)] field: String,
    #[server(default)] typed: String,
) -> Result<Vec<String>, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let me = c.actor().await?;
        let column = match field.as_str() {
            "vm" => crate::store::LogName::Vm,
            "actor" => crate::store::LogName::Actor,
            _ => {
                return Err(AppError::field(
                    "field",
                    "Suggestions are for \"vm\" or \"actor\".",
                ));
            }
        };
        // Read as the page's filters read it; what they refuse suggests nothing (the filter
        // says why).
        let typed = typed.trim().trim_matches('"');
        let f = read_log_filter(typed, "", "", "", "", "");
        if f.errors.get("vm").is_some() {
            return Ok(Vec::new());
        }
        let prefix = f.query.vm.unwrap_or_default();
        crate::services::activity::suggest(&c.state.store, &me, column, &prefix, SUGGESTIONS).await
    };
    super::ctx::finish(run.await)
}

/// How many VM names and user names the activity page suggests.
#[cfg(feature = "ssr")]
const SUGGESTIONS: usize = 50;

/// Verifies the whole activity log now (administrators over everything): every entry,
/// HMAC and signed checkpoint, and the position kept outside the database. Answers the
/// outcome; it is also logged.
#[server(endpoint = "verify_activity_log")]
pub async fn verify_activity_log() -> Result<String, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        let me = c.actor().await?;
        let status =
            crate::services::activity::verify_full(&c.state.store, &me, &c.state.audit_anchor)
                .await?;
        Ok(status.message)
    };
    super::ctx::finish(run.await)
}

/// The time zone the activity log's times are shown and its dates read in.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone)]
pub struct LogZone(jiff::tz::TimeZone);

/// A zone by its IANA name: from the host's zoneinfo, which the OS keeps current, else
/// from the copy built into the server (a host without tzdata, or without the legacy
/// names such as `Asia/Calcutta` that browsers still report).
#[cfg(feature = "ssr")]
pub fn lookup_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    static BUNDLED: std::sync::OnceLock<jiff::tz::TimeZoneDatabase> = std::sync::OnceLock::new();
    jiff::tz::TimeZone::get(name).ok().or_else(|| {
        BUNDLED
            .get_or_init(jiff::tz::TimeZoneDatabase::bundled)
            .get(name)
            .ok()
    })
}

/// The copy built into the server knows the names browsers report, legacy ones too.
#[cfg(all(test, feature = "ssr"))]
#[test]
fn the_bundled_zone_database_knows_current_and_legacy_names() {
    let db = jiff::tz::TimeZoneDatabase::bundled();
    for name in [
        "Asia/Kolkata",
        "Asia/Calcutta",
        "Europe/Kiev",
        "America/New_York",
    ] {
        assert!(
            db.get(name).is_ok(),
            "{name} is not in the bundled database"
        );
    }
    assert!(lookup_zone("Asia/Calcutta").is_some());
    assert!(lookup_zone("Mars/Olympus").is_none());
}

#[cfg(feature = "ssr")]
impl LogZone {
    pub fn utc() -> Self {
        LogZone(jiff::tz::TimeZone::UTC)
    }

    /// An IANA zone name as the browser reports it (`Asia/Kolkata`); empty is UTC.
    pub fn parse(name: &str) -> Result<Self, &'static str> {
        const UNKNOWN: &str = "Unknown time zone: times and dates are in UTC.";
        let name = name.trim();
        if name.is_empty() || name.eq_ignore_ascii_case("utc") {
            return Ok(Self::utc());
        }
        // Only what zone names are made of reaches the zone database's lookup.
        let name = crate::model::zone_name(name).ok_or(UNKNOWN)?;
        lookup_zone(name).map(LogZone).ok_or(UNKNOWN)
    }

    pub fn is_utc(&self) -> bool {
        self.0.iana_name().is_none_or(|n| n == "UTC")
    }

    pub fn name(&self) -> String {
        self.0.iana_name().unwrap_or("UTC").to_owned()
    }

    /// The zone's offset from UTC now, as `UTC+05:30`.
    pub fn offset_now(&self) -> String {
        let offset = self.0.to_offset(jiff::Timestamp::now());
        if offset.seconds() == 0 {
            "UTC".to_owned()
        } else {
            format!("UTC{offset}")
        }
    }

    /// A time that says its zone: `2027-01-15 13:30:00 +05:30`, or `… UTC`.
    pub fn format(&self, ms: i64) -> String {
        if self.is_utc() {
            return crate::model::format_utc(ms);
        }
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| {
                t.to_zoned(self.0.clone())
                    .strftime("%Y-%m-%d %H:%M:%S %:z")
                    .to_string()
            })
            .unwrap_or_else(|_| crate::model::format_utc(ms))
    }

    /// `YYYY-MM-DD` (the start of that day here; with `end`, the start of the next: `to`
    /// is inclusive) or `YYYY-MM-DDTHH:MM`, as milliseconds since the epoch.
    fn instant(&self, s: &str, end: bool) -> Result<Option<i64>, &'static str> {
        use jiff::civil::{Date, DateTime};
        const BAD: &str = "Enter a date as YYYY-MM-DD.";
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let zoned = if let Ok(d) = Date::strptime("%Y-%m-%d", s) {
            let d = if end {
                d.tomorrow().map_err(|_| BAD)?
            } else {
                d
            };
            d.to_zoned(self.0.clone())
        } else if let Ok(t) = DateTime::strptime("%Y-%m-%dT%H:%M", s) {
            t.to_zoned(self.0.clone())
        } else {
            return Err(BAD);
        };
        zoned
            .map(|z| Some(z.timestamp().as_millisecond()))
            .map_err(|_| BAD)
    }
}

/// The activity log's filters as read: the query of the valid ones, the message of each
/// bad one (left out of the query), and the zone their dates were read in.
#[cfg(feature = "ssr")]
pub struct LogFilter {
    pub query: crate::store::LogQuery,
    pub errors: crate::domain::FieldErrors,
    pub zone: LogZone,
}

/// Reads the activity log's filters. VM and user match names that start with the value,
/// case ignored (a value in double quotes: the whole name); the action matches exactly; dates are `YYYY-MM-DD` (`to` inclusive) or
/// `YYYY-MM-DDTHH:MM`, in `zone` (an IANA name; empty: UTC). Each bad filter gets its
/// message and is left out of the query, so that the page can still show the log.
#[cfg(feature = "ssr")]
pub fn read_log_filter(
    vm: &str,
    actor: &str,
    action: &str,
    from: &str,
    to: &str,
    zone: &str,
) -> LogFilter {
    let mut errors = crate::domain::FieldErrors::new();
    let zone = errors
        .check("tz", LogZone::parse(zone))
        .unwrap_or_else(LogZone::utc);
    let mut text = |field: &str, value: &str| -> Option<String> {
        let value = value.trim();
        if value.chars().count() > 100 {
            errors.add(field, "At most 100 characters.");
            return None;
        }
        // No name holds them, and PostgreSQL refuses a NUL in text outright.
        if value.chars().any(char::is_control) {
            errors.add(field, "Names have no control characters.");
            return None;
        }
        (!value.is_empty()).then(|| value.to_owned())
    };
    // A name in double quotes is the whole name (the VM page's link to its entries).
    let exact = |v: Option<String>| match v {
        Some(v) if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') => {
            (Some(v[1..v.len() - 1].to_owned()), true)
        }
        v => (v, false),
    };
    let (vm, vm_exact) = exact(text("vm", vm));
    let (actor, actor_exact) = exact(text("actor", actor));
    let mut action = text("action", action);
    if action.as_deref().is_some_and(|a| {
        !a.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
    }) {
        errors.add(
            "action",
            "Enter an action's name, such as request or grant.revoke.",
        );
        action = None;
    }
    let from_ms = errors.check("from", zone.instant(from, false)).flatten();
    let mut to_ms = errors.check("to", zone.instant(to, true)).flatten();
    if let (Some(f), Some(t)) = (from_ms, to_ms)
        && f >= t
    {
        errors.add("to", "The end must be after the start.");
        to_ms = None;
    }
    LogFilter {
        query: crate::store::LogQuery {
            before_seq: None,
            vm,
            vm_exact,
            actor,
            actor_exact,
            action,
            from_ms,
            to_ms,
            offset: 0,
            limit: PAGE_SIZE,
        },
        errors,
        zone,
    }
}

/// The activity log's filters for the REST API and the CSV download, which refuse a bad
/// filter (422 naming it) rather than leave it out. Dates in `zone` (empty: UTC).
#[cfg(feature = "ssr")]
pub fn parse_log_filter(
    vm: &str,
    actor: &str,
    action: &str,
    from: &str,
    to: &str,
    zone: &str,
) -> Result<crate::store::LogQuery, AppError> {
    let f = read_log_filter(vm, actor, action, from, to, zone);
    f.errors.into_result()?;
    Ok(f.query)
}

/// Where a new enrollment waits, for a plain form post only, until the page it returns to
/// shows it.
#[cfg(feature = "ssr")]
const NEW_ENROLLMENT_KEY: &str = "new_enrollment";

/// A one-time enrollment token (valid 1 hour) and the command to run: for the agent of an
/// existing VM (`vm_id`), or, with `vm_id` empty, for an agent that registers its host as
/// a new VM in `group`.
///
/// The hydrated page gets it in the answer. A plain HTML form post (no JavaScript) is
/// answered with a redirect, so for it alone the enrollment waits in the session until the
/// page that follows reads and removes it ([`take_new_enrollment`]); it never sits in a URL.
#[server(endpoint = "create_enrollment_token")]
pub async fn create_enrollment_token(
    #[server(default)] vm_id: String,
    #[server(default)] group: String,
) -> Result<crate::model::NewEnrollment, AppError> {
    use crate::services::enrollment::{self, EnrollTarget};
    let run = async {
        let c = super::ctx::ctx().await?;
        let actor = c.actor().await?;
        let target = if vm_id.is_empty() {
            EnrollTarget::Group(&group)
        } else {
            EnrollTarget::Vm(&vm_id)
        };
        let host = use_context::<http::request::Parts>().and_then(|p| {
            p.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok().map(str::to_owned))
        });
        let server = enrollment::server_url(c.state.public_url.as_deref(), host.as_deref());
        let made = enrollment::create(&c.state.store, &actor, target, &server).await?;
        let created = crate::model::NewEnrollment {
            vm_id: made.vm_id.unwrap_or_default(),
            token: made.token,
            command: made.command,
            warning: made.warning,
            expires_at: made.expires_at,
            download_missing: crate::services::jit::agent_download_missing(
                &c.state.leptos_options.site_root,
            ),
        };
        c.keep_for_next_page(NEW_ENROLLMENT_KEY, &created).await?;
        Ok(created)
    };
    super::ctx::finish(run.await)
}

/// The enrollment created by a plain form post just before, for the page of `vm_id` (empty:
/// the Add VM page), once: it is removed from the session as it is read.
#[server(endpoint = "take_new_enrollment")]
pub async fn take_new_enrollment(
    #[server(default)] vm_id: String,
) -> Result<Option<crate::model::NewEnrollment>, AppError> {
    let run = async {
        let c = super::ctx::ctx().await?;
        c.actor().await?;
        // Another page's enrollment stays for that page.
        c.take_kept::<crate::model::NewEnrollment>(NEW_ENROLLMENT_KEY, |e| e.vm_id == vm_id)
            .await
    };
    super::ctx::finish(run.await)
}
