//! Access requests: create, decide, revoke, extend, expire.

use super::Actor;
use super::jit::{require, visible_vm, vm_resource};
use crate::domain::request::{
    Event, RequestInput, RequestStatus, extended_end, parse_port_key, parse_request,
};
use crate::domain::{Action, FieldErrors, permits, permits_approval};
use crate::error::{AppError, AppResult};
use crate::store::{RequestFilter, Store, StoredRequest};

pub struct AccessForm<'a> {
    /// `VM_ID:PORT/PROTOCOL` for every port toggled on.
    pub ports: &'a [String],
    pub vm_ids: &'a [String],
    pub source_mode: &'a str,
    pub custom_source: &'a str,
    pub duration_minutes: &'a str,
    pub justification: &'a str,
}

/// Creates one request per VM, all of them or none: every VM's part is checked before
/// anything is stored. Returns the request ids.
pub async fn request_access(
    store: &Store,
    actor: &Actor,
    form: AccessForm<'_>,
) -> AppResult<Vec<String>> {
    if form.vm_ids.is_empty() {
        return Err(AppError::field("ports", "Choose at least one VM."));
    }
    if form.vm_ids.len() > 50 {
        return Err(AppError::field("ports", "At most 50 VMs in one request."));
    }
    let mut errors = FieldErrors::new();
    let mut parsed = Vec::new();
    for vm_id in form.vm_ids {
        let vm = visible_vm(store, actor, vm_id).await?;
        require(actor, Action::RequestAccess, &vm_resource(&vm))?;
        let Some(policy) = store.get_policy(&vm.id).await? else {
            errors.add("ports", format!("{} has no JIT policy.", vm.name));
            continue;
        };
        let mut ports = Vec::new();
        for key in form.ports {
            let Some((id, port)) = key.split_once(':') else {
                errors.add("ports", "A selected port is malformed.");
                continue;
            };
            if id == vm.id {
                match parse_port_key(port) {
                    Some(p) => ports.push(p),
                    None => errors.add("ports", format!("'{port}' is not a port.")),
                }
            }
        }
        let input = RequestInput {
            ports,
            source_mode: form.source_mode,
            custom_source: form.custom_source,
            duration_minutes: form.duration_minutes,
            justification: form.justification,
        };
        match parse_request(&vm.name, &policy, &input, actor.ip) {
            Ok(spec) => parsed.push((vm, spec)),
            Err(e) => {
                for fe in e.0 {
                    if errors.get(&fe.field) != Some(fe.message.as_str()) {
                        errors.add(&fe.field, fe.message);
                    }
                }
            }
        }
    }
    errors.into_result()?;
    let batch = uuid::Uuid::new_v4().to_string();
    let mut ids = Vec::new();
    for (vm, spec) in parsed {
        let mut log = actor.entry("request", &vm.name);
        log.ports = spec
            .ports
            .iter()
            .map(|(p, pr)| format!("{p}/{}", pr.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        log.source = spec.source.to_string();
        log.justification = spec.justification.clone();
        log.detail = format!(
            "{} minutes; {}",
            spec.duration_secs / 60,
            if spec.needs_approval {
                "waiting for approval"
            } else {
                "opened"
            }
        );
        ids.push(
            store
                .create_request(&batch, &vm.id, &actor.user_id, &spec, log)
                .await?,
        );
    }
    Ok(ids)
}

async fn load(store: &Store, actor: &Actor, id: &str) -> AppResult<StoredRequest> {
    let request = store
        .get_request(id)
        .await?
        .ok_or_else(|| AppError::NotFound("The request".into()))?;
    // Visible to its requester, and to whoever may see the VM.
    let vm = crate::domain::Resource::Vm {
        id: request.vm_id.clone(),
        group: request.vm_group.clone(),
    };
    if request.requester_id != actor.user_id && !permits(&actor.roles, Action::ViewVm, &vm) {
        return Err(AppError::NotFound("The request".into()));
    }
    Ok(request)
}

fn log_for(actor: &Actor, action: &str, r: &StoredRequest) -> crate::store::NewLogEntry {
    let mut log = actor.entry(action, &r.vm_name);
    log.ports = r
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.port, p.protocol))
        .collect::<Vec<_>>()
        .join(", ");
    log.source = r.source.clone();
    log.justification = r.justification.clone();
    log
}

fn transition(r: &StoredRequest, event: Event) -> AppResult<RequestStatus> {
    r.status
        .on(event)
        .map_err(|e| AppError::Conflict(e.to_string()))
}

fn decided_elsewhere() -> AppError {
    AppError::Conflict("The request changed in the meantime; reload to see its status.".into())
}

fn check_comment(comment: &str) -> AppResult<()> {
    if comment.chars().count() > 500 {
        return Err(AppError::field(
            "comment",
            "A comment has at most 500 characters.",
        ));
    }
    Ok(())
}

/// Loads a pending request for a decision by `actor`: refused without the approver role
/// on its VM, and a conflict when it is the actor's own request or no longer decidable.
async fn load_for_decision(
    store: &Store,
    actor: &Actor,
    id: &str,
    comment: &str,
    event: Event,
) -> AppResult<StoredRequest> {
    check_comment(comment)?;
    let r = load(store, actor, id).await?;
    let vm = crate::domain::Resource::Vm {
        id: r.vm_id.clone(),
        group: r.vm_group.clone(),
    };
    if !permits(&actor.roles, Action::ApproveRequest, &vm) {
        return Err(AppError::Forbidden);
    }
    if !permits_approval(&actor.roles, &vm, &actor.user_id, &r.requester_id) {
        let message = match event {
            Event::Deny => "You cannot deny your own request; revoke it instead.",
            _ => "You cannot approve your own request.",
        };
        return Err(AppError::Conflict(message.into()));
    }
    transition(&r, event)?;
    Ok(r)
}

pub async fn approve(store: &Store, actor: &Actor, id: &str, comment: &str) -> AppResult<()> {
    let r = load_for_decision(store, actor, id, comment, Event::Approve).await?;
    let mut log = log_for(actor, "approve", &r);
    log.detail = format!("request of {}; {}", r.requester, comment.trim());
    if store
        .approve_request(id, &actor.username, comment.trim(), log)
        .await?
    {
        Ok(())
    } else {
        Err(decided_elsewhere())
    }
}

pub async fn deny(store: &Store, actor: &Actor, id: &str, comment: &str) -> AppResult<()> {
    let r = load_for_decision(store, actor, id, comment, Event::Deny).await?;
    let mut log = log_for(actor, "deny", &r);
    log.result = "denied".into();
    log.detail = format!("request of {}; {}", r.requester, comment.trim());
    if store
        .deny_request(id, &actor.username, comment.trim(), log)
        .await?
    {
        Ok(())
    } else {
        Err(decided_elsewhere())
    }
}

/// The requester or an administrator of the VM may end a request early.
fn may_end(actor: &Actor, r: &StoredRequest) -> bool {
    let vm = crate::domain::Resource::Vm {
        id: r.vm_id.clone(),
        group: r.vm_group.clone(),
    };
    (r.requester_id == actor.user_id && permits(&actor.roles, Action::RequestAccess, &vm))
        || permits(&actor.roles, Action::ConfigurePolicy, &vm)
}

pub async fn revoke(store: &Store, actor: &Actor, id: &str) -> AppResult<()> {
    let r = load(store, actor, id).await?;
    if !may_end(actor, &r) {
        return Err(AppError::Forbidden);
    }
    transition(&r, Event::Revoke)?;
    let reason = if r.requester_id == actor.user_id {
        "revoked by user".to_owned()
    } else {
        format!("revoked by {}", actor.username)
    };
    let mut log = log_for(actor, "revoke", &r);
    log.detail = format!("request of {}", r.requester);
    if store.revoke_request(id, &reason, log).await? {
        Ok(())
    } else {
        Err(decided_elsewhere())
    }
}

pub async fn extend(store: &Store, actor: &Actor, id: &str, minutes: &str) -> AppResult<()> {
    let r = load(store, actor, id).await?;
    if !may_end(actor, &r) {
        return Err(AppError::Forbidden);
    }
    transition(&r, Event::Extend)?;
    let policy = store
        .get_policy(&r.vm_id)
        .await?
        .ok_or_else(|| AppError::Conflict("The VM has no JIT policy any more.".into()))?;
    let max = r
        .ports
        .iter()
        .filter_map(|p| {
            policy.rules.iter().find(|rule| {
                i64::from(rule.port.get()) == p.port && rule.protocol.as_str() == p.protocol
            })
        })
        .map(|rule| rule.max_duration.secs())
        .min()
        .ok_or_else(|| {
            AppError::Conflict("None of the request's ports is under the policy any more.".into())
        })?;
    let now = chrono::Utc::now().timestamp_millis();
    let end = extended_end(now, r.end_at.unwrap_or(now), minutes, max)?;
    let mut log = log_for(actor, "extend", &r);
    log.detail = format!("until {}", crate::model::format_utc(end));
    if store.extend_request(id, end, log).await? {
        Ok(())
    } else {
        Err(decided_elsewhere())
    }
}

pub async fn my_requests(store: &Store, actor: &Actor) -> AppResult<Vec<StoredRequest>> {
    Ok(store
        .list_requests(&RequestFilter {
            requester_id: Some(actor.user_id.clone()),
            limit: 200,
            ..Default::default()
        })
        .await?)
}

/// Pending requests this actor may decide: on VMs where they approve, not their own.
pub async fn approval_queue(store: &Store, actor: &Actor) -> AppResult<Vec<StoredRequest>> {
    let pending = store
        .list_requests(&RequestFilter {
            status: Some(RequestStatus::PendingApproval),
            limit: 500,
            ..Default::default()
        })
        .await?;
    Ok(pending
        .into_iter()
        .filter(|r| {
            let vm = crate::domain::Resource::Vm {
                id: r.vm_id.clone(),
                group: r.vm_group.clone(),
            };
            permits_approval(&actor.roles, &vm, &actor.user_id, &r.requester_id)
        })
        .collect())
}

pub async fn vm_requests(
    store: &Store,
    actor: &Actor,
    vm_id: &str,
) -> AppResult<Vec<StoredRequest>> {
    visible_vm(store, actor, vm_id).await?;
    Ok(store
        .list_requests(&RequestFilter {
            vm_id: Some(vm_id.to_owned()),
            limit: 100,
            ..Default::default()
        })
        .await?)
}

/// The expiry job: ends grants at their end time, to the second. Runs in the server.
pub async fn run_expiry(store: Store, wake: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        match store.expire_due(now).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "grants expired"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "expiry failed"),
        }
        let next = store.next_expiry().await.ok().flatten();
        let wait_ms = next
            .map(|t| (t - chrono::Utc::now().timestamp_millis()).clamp(0, 1000))
            .unwrap_or(1000);
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64 + 1)) => {}
            _ = wake.notified() => {}
        }
    }
}

/// One request, for its requester or whoever may see its VM.
pub async fn get(store: &Store, actor: &Actor, id: &str) -> AppResult<StoredRequest> {
    load(store, actor, id).await
}
