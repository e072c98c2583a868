//! Access requests: create, decide (re-checking everything at decision time), revoke,
//! extend, expire.

use super::Actor;
use super::access::roles_from;
use super::jit::{require, visible_vm, vm_resource};
use super::notify;
use crate::domain::jit::{Approvers, Port, Protocol};
use crate::domain::notify::NotifyEvent;
use crate::domain::request::{
    Event, Misfit, PortStatus, RequestInput, RequestStatus, extended_end, parse_port_key,
    parse_request, reason, recheck_request, split_by_approval,
};
use crate::domain::{Action, Cidr, FieldErrors, Resource, permits, permits_approval};
use crate::error::{AppError, AppResult};
use crate::store::{
    Ending, GrantFilter, RequestFilter, Store, StoredRequest, WaitingFilter, WaitingRequest,
    WriteTx,
};

pub struct AccessForm<'a> {
    /// `VM_ID:PORT/PROTOCOL` for every port toggled on.
    pub ports: &'a [String],
    pub vm_ids: &'a [String],
    pub source_mode: &'a str,
    pub custom_source: &'a str,
    pub duration_minutes: &'a str,
    pub justification: &'a str,
    /// Empty for now, or a later start (see [`crate::domain::request::parse_start`]).
    pub start: &'a str,
}

/// Creates one request per VM, all of them or none, in one transaction; a VM whose chosen
/// ports include some that need approval and some that don't gets two, so that the latter
/// open at once while the former wait (see [`split_by_approval`]). Every VM's part is
/// checked first without holding the write lock (for quick answers), then again inside the
/// transaction against the requester, roles and policies as they are at that moment: a
/// user disabled, a role removed or a policy tightened a moment earlier cannot slip a
/// request through. Returns the request ids.
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
    let mut any_chosen = false;
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
        // A VM offered on the form but without a ticked port is left out of the request.
        if ports.is_empty() && form.vm_ids.len() > 1 {
            continue;
        }
        any_chosen = true;
        let parts = split_by_approval(&policy, &ports);
        // An empty choice still goes through parse_request, which says what is missing.
        for ports in if parts.is_empty() { vec![ports] } else { parts } {
            let input = RequestInput {
                ports,
                source_mode: form.source_mode,
                custom_source: form.custom_source,
                duration_minutes: form.duration_minutes,
                justification: form.justification,
                start: form.start,
            };
            match parse_request(&vm.name, &policy, &input, actor.ip, store.now_ms()) {
                Ok(_) => parsed.push((vm.clone(), input)),
                Err(e) => {
                    for fe in e.0 {
                        if !errors.has(&fe.field, &fe.message) {
                            errors.add(&fe.field, fe.message);
                        }
                    }
                }
            }
        }
    }
    if !any_chosen && errors.is_empty() {
        errors.add("ports", "Choose at least one port.");
    }
    errors.into_result()?;
    let batch = uuid::Uuid::new_v4().to_string();
    let mut ids = Vec::new();
    let mut tx = store.begin_write().await?;
    let inputs = tx.role_inputs(&actor.user_id).await?;
    let roles = roles_from(&inputs);
    for (vm, input) in &parsed {
        let Some(now_vm) = tx.vm(&vm.id).await? else {
            return Err(AppError::NotFound("The VM".into()));
        };
        if !permits(&roles, Action::RequestAccess, &vm_resource(&now_vm)) {
            return Err(AppError::Forbidden);
        }
        let Some(policy) = tx.policy(&vm.id).await? else {
            return Err(AppError::field(
                "ports",
                format!("{} has no JIT policy any more.", vm.name),
            ));
        };
        // The policy may have changed since the first check: what is stored is what the
        // policy in force allows (sources, maximum, approval).
        let spec = parse_request(&vm.name, &policy, input, actor.ip, tx.now)?;
        let mut log = actor.entry("request", &vm.name);
        log.ports = spec
            .ports
            .iter()
            .map(|(p, pr)| format!("{p}/{}", pr.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        log.source = spec.source.to_string();
        log.justification = spec.justification.clone();
        let when = match spec.start_at {
            Some(start) => format!(" from {}", crate::model::format_utc(start)),
            None => String::new(),
        };
        log.detail = format!(
            "{} minutes{when}; {}",
            spec.duration_secs / 60,
            match (spec.needs_approval, spec.start_at) {
                (true, _) => "waiting for approval",
                (false, Some(_)) => "scheduled",
                (false, None) => "opened",
            }
        );
        let id = tx
            .create_request(&batch, &vm.id, &actor.user_id, &spec, log)
            .await?;
        if spec.needs_approval {
            let about = notify::About {
                request_id: id.clone(),
                vm_id: vm.id.clone(),
                vm_name: now_vm.name.clone(),
                vm_group: now_vm.group.clone(),
                requester_id: actor.user_id.clone(),
                requester: actor.username.clone(),
                ports: spec
                    .ports
                    .iter()
                    .map(|(p, pr)| format!("{p}/{}", pr.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
                source: spec.source.to_string(),
                justification: spec.justification.clone(),
                starts: spec.start_at,
            };
            notify::approval_waiting(&mut tx, &about).await?;
        }
        ids.push(id);
    }
    tx.commit().await?;
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
    log.ports = r.ports_text();
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

/// The approver's own right, decided again inside the deciding transaction: their roles
/// and the VM's group as they are now (a role removed or the VM moved a moment ago
/// counts), and never their own request.
async fn approver_still_may(tx: &mut WriteTx, actor: &Actor, w: &WaitingRequest) -> AppResult<()> {
    let roles = roles_from(&tx.role_inputs(&actor.user_id).await?);
    let vm = Resource::Vm {
        id: w.vm_id.clone(),
        group: w.vm_group.clone(),
    };
    if permits_approval(&roles, &vm, &actor.user_id, &w.requester_id) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// How many of a waiting request's approvals still stand: an approval counts only while
/// its approver may approve the request now (their roles as this transaction sees them,
/// the VM's group now). Approvals that no longer stand (a role taken away, an account
/// disabled or removed, the VM moved out of their scope) are withdrawn, so they neither
/// open the request nor show in its "k of N".
async fn count_standing_approvals(tx: &mut WriteTx, w: &WaitingRequest) -> AppResult<i64> {
    let vm = Resource::Vm {
        id: w.vm_id.clone(),
        group: w.vm_group.clone(),
    };
    let mut standing = 0;
    for approver in tx.approvers_of(&w.id).await? {
        let roles = roles_from(&tx.role_inputs(&approver).await?);
        if permits_approval(&roles, &vm, &approver, &w.requester_id) {
            standing += 1;
        } else {
            tx.withdraw_approval(&w.id, &approver).await?;
        }
    }
    Ok(standing)
}

/// The ports a waiting request asks for, as the domain names them.
fn waiting_ports(w: &WaitingRequest) -> crate::store::Result<Vec<(Port, Protocol)>> {
    w.ports
        .iter()
        .map(|(port, protocol)| {
            Some((
                u16::try_from(*port).ok().and_then(Port::new)?,
                Protocol::parse(protocol).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| crate::store::StoreError::Corrupt(format!("request {}", w.id)))
}

/// Re-checks a waiting request at decision time, as the transaction sees the world: it
/// has not timed out, its requester exists, is enabled and may still request on the VM,
/// and every port still fits the VM's policy. The first failure is returned.
async fn recheck_waiting(
    tx: &mut WriteTx,
    w: &WaitingRequest,
) -> crate::store::Result<Result<(), Misfit>> {
    if let Some(deadline) = w.approval_expires_at
        && deadline <= tx.now
    {
        return Ok(Err(Misfit {
            reason: reason::APPROVAL_TIMED_OUT,
            message: format!(
                "approval had to come by {}",
                crate::model::format_utc(deadline)
            ),
        }));
    }
    let inputs = tx.role_inputs(&w.requester_id).await?;
    let vm = Resource::Vm {
        id: w.vm_id.clone(),
        group: w.vm_group.clone(),
    };
    match &inputs.user {
        None => {
            return Ok(Err(Misfit {
                reason: reason::REQUESTER_REMOVED,
                message: "the requester's account no longer exists".into(),
            }));
        }
        Some(u) if u.disabled => {
            return Ok(Err(Misfit {
                reason: reason::REQUESTER_DISABLED,
                message: format!("{}'s account is disabled", u.username),
            }));
        }
        Some(u) if !permits(&roles_from(&inputs), Action::RequestAccess, &vm) => {
            return Ok(Err(Misfit {
                reason: reason::LOST_PERMISSION,
                message: format!(
                    "{} may no longer request access to {}",
                    u.username, w.vm_name
                ),
            }));
        }
        Some(_) => {}
    }
    let policy = tx.policy(&w.vm_id).await?;
    let corrupt = || crate::store::StoreError::Corrupt(format!("request {}", w.id));
    let ports = waiting_ports(w)?;
    let source = Cidr::parse(&w.source).map_err(|_| corrupt())?;
    Ok(
        recheck_request(policy.as_ref(), &ports, &source, w.duration_secs).map_err(|m| Misfit {
            message: m.message.trim_end_matches('.').to_owned(),
            ..m
        }),
    )
}

/// Approves a waiting request after re-checking everything it rests on. When a check
/// fails the request is closed with that reason and the approver is told which check.
///
/// A request may need several distinct approvers (the most any of its ports' rules asks
/// for, under the policy as it stands in this transaction): each approval is recorded
/// and logged, and only the one that reaches the number opens the ports. Until then the
/// request keeps waiting, under its approval time-out. Nobody approves twice.
pub async fn approve(store: &Store, actor: &Actor, id: &str, comment: &str) -> AppResult<()> {
    let r = load_for_decision(store, actor, id, comment, Event::Approve).await?;
    let ip = actor.ip.to_string();
    let mut tx = store.begin_write().await?;
    let Some(w) = tx
        .waiting_requests(WaitingFilter::Request(id))
        .await?
        .into_iter()
        .find(WaitingRequest::is_pending)
    else {
        return Err(decided_elsewhere());
    };
    approver_still_may(&mut tx, actor, &w).await?;
    if let Err(misfit) = recheck_waiting(&mut tx, &w).await? {
        tx.close_requests(
            std::slice::from_ref(&w),
            &Ending {
                status: PortStatus::Cancelled,
                reason: misfit.reason,
                actor: &actor.username,
                client_ip: &ip,
                action: "request.cancel",
                result: "cancelled",
            },
            None,
        )
        .await?;
        tx.commit().await?;
        return Err(AppError::Conflict(format!(
            "The request cannot be approved: {}. It has been closed.",
            misfit.message
        )));
    }
    // The re-check passed, so the VM has a policy; the number it asks for now counts.
    let required = match tx.policy(&w.vm_id).await? {
        Some(policy) => policy.approvals_required(&waiting_ports(&w)?),
        None => return Err(decided_elsewhere()),
    };
    if !tx
        .record_approval(id, &actor.user_id, &actor.username, comment.trim())
        .await?
    {
        return Err(AppError::Conflict(
            "You approved this request already.".into(),
        ));
    }
    let given = count_standing_approvals(&mut tx, &w).await?;
    tx.set_approvals_required(id, i64::from(required.get()))
        .await?;
    let mut log = log_for(actor, "approve", &r);
    let progress = if required > Approvers::ONE {
        format!("{given} of {required} approvals; ")
    } else {
        String::new()
    };
    log.detail = format!("{progress}request of {}; {}", r.requester, comment.trim());
    if !required.reached_by(given) {
        // Recorded; the request waits for the next approver.
        tx.log(log).await?;
        tx.commit().await?;
        return Ok(());
    }
    let opened = match w.planned_start_at {
        Some(start) if start > tx.now => {
            log.detail
                .push_str(&format!("; opens at {}", crate::model::format_utc(start)));
            tx.schedule_request(id, &actor.username, comment.trim(), log)
                .await?
        }
        _ => {
            tx.activate_request(&w, &actor.username, &ip, comment.trim(), log)
                .await?
        }
    };
    if !opened {
        return Err(decided_elsewhere());
    }
    let mut about = notify::About::of_request(&r);
    about.starts = w.planned_start_at.filter(|start| *start > tx.now);
    notify::tell_requester(
        &mut tx,
        NotifyEvent::Approved,
        &about,
        &actor.username,
        comment,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn deny(store: &Store, actor: &Actor, id: &str, comment: &str) -> AppResult<()> {
    let r = load_for_decision(store, actor, id, comment, Event::Deny).await?;
    let ip = actor.ip.to_string();
    let mut tx = store.begin_write().await?;
    let waiting: Vec<_> = tx
        .waiting_requests(WaitingFilter::Request(id))
        .await?
        .into_iter()
        .filter(WaitingRequest::is_pending)
        .collect();
    for w in &waiting {
        approver_still_may(&mut tx, actor, w).await?;
    }
    let closed = tx
        .close_requests(
            &waiting,
            &Ending {
                status: PortStatus::Denied,
                reason: "denied by approver",
                actor: &actor.username,
                client_ip: &ip,
                action: "deny",
                result: "denied",
            },
            Some((&actor.username, comment.trim())),
        )
        .await?;
    if closed == 0 {
        return Err(decided_elsewhere());
    }
    let about = notify::About::of_request(&r);
    notify::tell_requester(
        &mut tx,
        NotifyEvent::Denied,
        &about,
        &actor.username,
        comment,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether `actor` may decide request `r` now: it waits for approval, they may approve on
/// its VM, it is not their own, and they have not approved it already. The portal asks
/// this to offer Approve and Deny; the decisions check everything again.
pub async fn may_decide(store: &Store, actor: &Actor, r: &StoredRequest) -> AppResult<bool> {
    let vm = Resource::Vm {
        id: r.vm_id.clone(),
        group: r.vm_group.clone(),
    };
    Ok(r.status == RequestStatus::PendingApproval
        && permits_approval(&actor.roles, &vm, &actor.user_id, &r.requester_id)
        && !store.has_approved(&r.id, &actor.user_id).await?)
}

/// Whether `actor` may end (revoke or extend) request `r`: its requester while they may
/// still request on the VM, or an administrator of the VM. The portal asks this too, to
/// show the buttons.
pub fn may_end(actor: &Actor, r: &StoredRequest) -> bool {
    let vm = crate::domain::Resource::Vm {
        id: r.vm_id.clone(),
        group: r.vm_group.clone(),
    };
    may_end_by(actor, r, |action| permits(&actor.roles, action, &vm))
}

/// Who may end or extend a request, given what `allows` lets the actor do on its VM: its
/// requester while still allowed to request access there, or whoever configures its policy.
fn may_end_by(actor: &Actor, r: &StoredRequest, allows: impl Fn(Action) -> bool) -> bool {
    (r.requester_id == actor.user_id && allows(Action::RequestAccess))
        || allows(Action::ConfigurePolicy)
}

/// Ends a request now: its grants in force through the one ending path, or, while it
/// waits for approval, the request itself.
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
    let ip = actor.ip.to_string();
    let ending = Ending {
        status: PortStatus::Revoked,
        reason: &reason,
        actor: &actor.username,
        client_ip: &ip,
        action: "revoke",
        result: "success",
    };
    let mut tx = store.begin_write().await?;
    let grants = tx.open_grants(GrantFilter::Request(id)).await?;
    let done = if grants.is_empty() {
        let waiting = tx.waiting_requests(WaitingFilter::Request(id)).await?;
        tx.close_requests(&waiting, &ending, None).await?
    } else {
        tx.end_grants(&grants, &ending).await?
    };
    if done == 0 {
        return Err(decided_elsewhere());
    }
    if r.requester_id != actor.user_id {
        let about = notify::About::of_request(&r);
        notify::tell_requester(&mut tx, NotifyEvent::Revoked, &about, &actor.username, "").await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Extends an active request: its end becomes now + `minutes`, within the smallest
/// maximum of its ports' rules as the policy stands in the transaction that writes it.
pub async fn extend(store: &Store, actor: &Actor, id: &str, minutes: &str) -> AppResult<()> {
    let r = load(store, actor, id).await?;
    if !may_end(actor, &r) {
        return Err(AppError::Forbidden);
    }
    transition(&r, Event::Extend)?;
    let mut tx = store.begin_write().await?;
    // Decided again on the VM's group and the actor's roles as they stand in the
    // transaction: more time is not given on a VM moved out of the actor's scope, or by a
    // role taken away, a moment ago. Both the actor's roles (with the limits of how it
    // signed in: an API token's owner has no identity-provider group roles once that
    // sign-in is old) and the stored ones must allow it.
    let stored = roles_from(&tx.role_inputs(&actor.user_id).await?);
    let vm = match tx.vm(&r.vm_id).await? {
        Some(vm) => vm_resource(&vm),
        None => return Err(AppError::NotFound("The VM".into())),
    };
    let allows =
        |action: Action| permits(&actor.roles, action, &vm) && permits(&stored, action, &vm);
    if !may_end_by(actor, &r, allows) {
        return Err(AppError::Forbidden);
    }
    let policy = tx
        .policy(&r.vm_id)
        .await?
        .ok_or_else(|| AppError::Conflict("The VM has no JIT policy any more.".into()))?;
    let grants = tx.open_grants(GrantFilter::Request(id)).await?;
    let max = grants
        .iter()
        .filter_map(|g| {
            policy.rules.iter().find(|rule| {
                i64::from(rule.port.get()) == g.port && rule.protocol.as_str() == g.protocol
            })
        })
        .map(|rule| rule.max_duration.secs())
        .min()
        .ok_or_else(|| {
            AppError::Conflict("None of the request's ports is under the policy any more.".into())
        })?;
    // An extension is a new window without a decision: on ports that need approval only
    // an administrator of the VM may give one; the requester asks again instead.
    let gated = grants.iter().any(|g| {
        policy
            .rules
            .iter()
            .any(|rule| i64::from(rule.port.get()) == g.port && rule.approval_required)
    });
    if gated && !allows(Action::ConfigurePolicy) {
        return Err(AppError::Conflict(
            "This access needed approval; request it again to get more time.".into(),
        ));
    }
    let now = tx.now;
    let current_end = grants.iter().map(|g| g.end_at).max().unwrap_or(now);
    let end = extended_end(now, current_end, minutes, max)?;
    let mut log = log_for(actor, "extend", &r);
    log.detail = format!("until {}", crate::model::format_utc(end));
    if tx.extend_request(id, end, log).await? {
        if r.requester_id != actor.user_id {
            let about = notify::About::of_request(&r);
            let until = format!("It now ends at {}.", crate::model::format_utc(end));
            notify::tell_requester(
                &mut tx,
                NotifyEvent::Extended,
                &about,
                &actor.username,
                &until,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    } else {
        Err(decided_elsewhere())
    }
}

/// Requests per page of the request lists.
pub const REQUESTS_PAGE: i64 = 50;

/// One page of a list, and whether another follows.
pub struct Page<T> {
    pub items: Vec<T>,
    pub more: bool,
}

async fn page_of(store: &Store, mut f: RequestFilter, page: i64) -> AppResult<Page<StoredRequest>> {
    let page = page.clamp(1, 100_000);
    f.offset = (page - 1) * REQUESTS_PAGE;
    f.limit = REQUESTS_PAGE + 1;
    let mut items = store.list_requests(&f).await?;
    let more = items.len() as i64 > REQUESTS_PAGE;
    items.truncate(REQUESTS_PAGE as usize);
    Ok(Page { items, more })
}

/// The actor's own requests, newest first, a page at a time.
pub async fn my_requests(
    store: &Store,
    actor: &Actor,
    page: i64,
) -> AppResult<Page<StoredRequest>> {
    page_of(
        store,
        RequestFilter {
            requester_id: Some(actor.user_id.clone()),
            ..Default::default()
        },
        page,
    )
    .await
}

/// Pending requests this actor may decide: on VMs where they approve (their scope, in
/// the database), not their own, not those they approved already (which wait for other
/// approvers); a page at a time.
pub async fn approval_queue(
    store: &Store,
    actor: &Actor,
    page: i64,
) -> AppResult<Page<StoredRequest>> {
    let scope = crate::domain::visibility(&actor.roles, Action::ApproveRequest);
    if !scope.everything && scope.groups.is_empty() && scope.vm_ids.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            more: false,
        });
    }
    page_of(
        store,
        RequestFilter {
            status: Some(RequestStatus::PendingApproval),
            not_requester: Some(actor.user_id.clone()),
            // A request this approver approved already waits for others, not for them.
            not_approved_by: Some(actor.user_id.clone()),
            scope: Some(scope),
            ..Default::default()
        },
        page,
    )
    .await
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

/// The requests on one VM the actor may see, a page at a time.
pub async fn vm_requests_page(
    store: &Store,
    actor: &Actor,
    vm_id: &str,
    page: i64,
) -> AppResult<Page<StoredRequest>> {
    visible_vm(store, actor, vm_id).await?;
    page_of(
        store,
        RequestFilter {
            vm_id: Some(vm_id.to_owned()),
            ..Default::default()
        },
        page,
    )
    .await
}

/// The expiry job: ends grants at their end time, to the second, and closes requests
/// whose approval timed out. Runs in the server; reads the time from the store's clock.
/// Whether a booked window still has the approval the policy in force asks for: approval
/// may have become required since it was booked, or more approvers, and an approver may
/// have lost the right (their approval is then withdrawn and does not count).
async fn approval_still_stands(
    tx: &mut WriteTx,
    w: &WaitingRequest,
) -> AppResult<Result<(), Misfit>> {
    let ports = waiting_ports(w)?;
    let Some(policy) = tx.policy(&w.vm_id).await? else {
        return Ok(Err(Misfit {
            reason: reason::POLICY_REMOVED,
            message: "the VM has no JIT policy any more".into(),
        }));
    };
    let gated = ports.iter().any(|(port, protocol)| {
        policy
            .rule_covering(*port, *protocol)
            .is_some_and(|r| r.approval_required)
    });
    if !gated {
        return Ok(Ok(()));
    }
    let required = policy.approvals_required(&ports);
    let standing = count_standing_approvals(tx, w).await?;
    if required.reached_by(standing) {
        Ok(Ok(()))
    } else {
        Ok(Err(Misfit {
            reason: reason::APPROVAL_LAPSED,
            message: format!("{standing} of {required} approvals stand now"),
        }))
    }
}

/// How many scheduled windows one transaction opens at most, so that other writes
/// interleave when many start together.
const OPEN_BATCH: i64 = 200;

/// Opens the approved windows whose start has come, each after a last re-check as the
/// transaction sees the world (the requester enabled and still allowed, every port still
/// fitting the policy): what fails is closed with the reason and opens nothing, and a
/// window that passed entirely while the server was down is closed as passed. Returns how
/// many opened and how many were closed.
pub async fn open_due(store: &Store) -> AppResult<(usize, usize)> {
    let mut opened = 0;
    let mut closed = 0;
    loop {
        let mut tx = store.begin_write().await?;
        let now = tx.now;
        let due = tx
            .waiting_requests(WaitingFilter::StartDue {
                now,
                limit: OPEN_BATCH,
            })
            .await?;
        for w in &due {
            let misfit = if w.window_end(now) <= now {
                Err(Misfit {
                    reason: reason::WINDOW_PASSED,
                    message: "its window passed before it could open".into(),
                })
            } else {
                match recheck_waiting(&mut tx, w).await? {
                    Ok(()) => approval_still_stands(&mut tx, w).await?,
                    misfit => misfit,
                }
            };
            let ports = w
                .ports
                .iter()
                .map(|(p, pr)| format!("{p}/{pr}"))
                .collect::<Vec<_>>()
                .join(", ");
            match misfit {
                Err(misfit) => {
                    closed += tx
                        .close_requests(
                            std::slice::from_ref(w),
                            &Ending {
                                result: "cancelled",
                                ..Ending::system(
                                    PortStatus::Cancelled,
                                    misfit.reason,
                                    "request.cancel",
                                )
                            },
                            None,
                        )
                        .await?;
                }
                Ok(()) => {
                    let log = crate::store::NewLogEntry {
                        actor: "system".into(),
                        client_ip: String::new(),
                        action: "open".into(),
                        vm: w.vm_name.clone(),
                        ports,
                        source: w.source.clone(),
                        justification: w.justification.clone(),
                        result: "success".into(),
                        detail: format!(
                            "scheduled window of {} opened until {}",
                            w.requester,
                            crate::model::format_utc(w.window_end(now))
                        ),
                    };
                    if tx.open_scheduled(w, log).await? {
                        opened += 1;
                    }
                }
            }
        }
        tx.commit().await?;
        if (due.len() as i64) < OPEN_BATCH {
            return Ok((opened, closed));
        }
    }
}

pub async fn run_expiry(store: Store, wake: std::sync::Arc<tokio::sync::Notify>) {
    loop {
        let expired = store.expire_due(store.now_ms()).await;
        // The server is stopping: what failed, failed on the closed store.
        if store.is_closed() {
            return;
        }
        match expired {
            Ok((expired, timed_out)) if expired + timed_out > 0 => {
                tracing::info!(expired, timed_out, "grants expired / requests timed out")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "expiry failed"),
        }
        match open_due(&store).await {
            Ok((opened, closed)) if opened + closed > 0 => {
                tracing::info!(
                    opened,
                    closed,
                    "scheduled windows opened / closed at their start"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "opening scheduled windows failed"),
        }
        let next = store.next_expiry().await.ok().flatten();
        let wait_ms = next
            .map(|t| (t - store.now_ms()).clamp(0, 1000))
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
