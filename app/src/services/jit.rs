//! VM inventory and JIT policies.

use super::Actor;
use super::access::{By, reconcile_users};
use crate::domain::jit::{JitPolicy, Port, PortRuleInput, Protocol};
use crate::domain::request::{GrantFate, PortStatus, grant_fate, reason, recheck_request};
use crate::domain::vm::VmSpec;
use crate::domain::vm_import::ImportFile;
use crate::domain::{Action, Cidr, Resource, permits, visibility};
use crate::error::{AppError, AppResult};
use crate::store::{
    Ending, GrantFilter, OpenGrant, Store, StoreError, StoredVm, TabCounts, VmFields, VmListQuery,
    VmSummary, VmTab, WaitingFilter, WaitingRequest,
};

pub use crate::domain::enforcement::SILENT_AFTER_MS;

pub fn vm_resource(vm: &StoredVm) -> Resource {
    Resource::Vm {
        id: vm.id.clone(),
        group: vm.group.clone(),
    }
}

pub fn require(actor: &Actor, action: Action, resource: &Resource) -> AppResult<()> {
    if permits(&actor.roles, action, resource) {
        Ok(())
    } else {
        Err(AppError::Forbidden)
    }
}

/// What the actor may do with a VM, for the buttons a page shows. Hiding a button
/// protects nothing: every action decides again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmCapabilities {
    pub manage: bool,
    pub configure: bool,
    pub request: bool,
    /// The activity log is read whole or not at all (`Resource::Global`).
    pub view_log: bool,
}

pub fn capabilities(actor: &Actor, vm: &StoredVm) -> VmCapabilities {
    let resource = vm_resource(vm);
    VmCapabilities {
        manage: permits(&actor.roles, Action::ManageVm, &resource),
        configure: permits(&actor.roles, Action::ConfigurePolicy, &resource),
        request: permits(&actor.roles, Action::RequestAccess, &resource),
        view_log: permits(&actor.roles, Action::ViewActivityLog, &Resource::Global),
    }
}

/// Whether the actor may add VMs (anywhere; a group admin adds to their group).
pub fn may_add_vms(actor: &Actor) -> bool {
    permits(&actor.roles, Action::ManageVm, &Resource::Global)
}

/// Whether the actor may do `action` on some VM (in any scope): the JIT tabs offer the
/// bulk buttons only to those who could use them.
pub fn may_somewhere(actor: &Actor, action: Action) -> bool {
    let v = crate::domain::visibility(&actor.roles, action);
    v.everything || !v.groups.is_empty() || !v.vm_ids.is_empty()
}

/// Loads a VM the actor may see; an invisible VM is reported as missing, not forbidden,
/// so that names outside one's scope do not leak.
pub async fn visible_vm(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<StoredVm> {
    let vm = store
        .get_vm(vm_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The VM".into()))?;
    if !permits(&actor.roles, Action::ViewVm, &vm_resource(&vm)) {
        return Err(AppError::NotFound("The VM".into()));
    }
    Ok(vm)
}

/// As [`visible_vm`] for several VMs at once (one query), in the order asked, each once,
/// with `check` applied to each in turn: the first VM missing, invisible or refused fails
/// the whole with the answer it would get one at a time.
pub async fn visible_vms(
    store: &Store,
    actor: &Actor,
    vm_ids: &[String],
    check: impl Fn(&StoredVm) -> AppResult<()>,
) -> AppResult<Vec<StoredVm>> {
    let mut found: std::collections::HashMap<String, StoredVm> = store
        .get_vms(vm_ids)
        .await?
        .into_iter()
        .map(|vm| (vm.id.clone(), vm))
        .collect();
    let mut out: Vec<StoredVm> = Vec::with_capacity(found.len());
    for id in vm_ids {
        if out.iter().any(|vm| &vm.id == id) {
            continue;
        }
        let vm = found
            .remove(id)
            .filter(|vm| permits(&actor.roles, Action::ViewVm, &vm_resource(vm)))
            .ok_or_else(|| AppError::NotFound("The VM".into()))?;
        check(&vm)?;
        out.push(vm);
    }
    Ok(out)
}

fn fields(spec: &VmSpec) -> VmFields {
    VmFields {
        name: spec.name.clone(),
        group: spec.group.clone(),
        addresses: spec.addresses_text(),
        os: spec.os.as_str().to_owned(),
        exposed_ports: spec.exposed_text(),
    }
}

fn duplicate_name(e: StoreError) -> AppError {
    match e {
        StoreError::Duplicate => AppError::field("name", "A VM with this name already exists."),
        other => other.into(),
    }
}

pub async fn create_vm(store: &Store, actor: &Actor, spec: VmSpec) -> AppResult<String> {
    require(
        actor,
        Action::ManageVm,
        &Resource::Vm {
            id: String::new(),
            group: spec.group.clone(),
        },
    )?;
    let mut log = actor.entry("vm.create", &spec.name);
    log.detail = format!(
        "group {}, {}, addresses {}",
        spec.group,
        spec.os.as_str(),
        spec.addresses_text()
    );
    let vm = store
        .create_vm(&fields(&spec), log)
        .await
        .map_err(duplicate_name)?;
    Ok(vm.id)
}

/// What an import found and did: the file with every error (the parser's, names already
/// taken, groups the actor may not add to) and the ids of the VMs added, which are none
/// unless every row was sound and it was no dry run.
#[derive(Debug)]
pub struct ImportOutcome {
    pub file: ImportFile,
    pub added: Vec<String>,
}

/// Adds every VM of a parsed file in one write transaction, each with its activity log
/// entry, or none: a single bad row stores nothing. A `dry_run` only looks, as a preview
/// does. Permission is decided for each row's group, as for one VM added by hand.
pub async fn import_vms(
    store: &Store,
    actor: &Actor,
    mut file: ImportFile,
    dry_run: bool,
) -> AppResult<ImportOutcome> {
    if !may_somewhere(actor, Action::ManageVm) {
        return Err(AppError::Forbidden);
    }
    for row in &mut file.rows {
        let Some(group) = row.spec.as_ref().map(|s| s.group.clone()) else {
            continue;
        };
        let resource = Resource::Vm {
            id: String::new(),
            group: group.clone(),
        };
        if !permits(&actor.roles, Action::ManageVm, &resource) {
            row.reject(
                "group",
                format!("You may not add VMs to the group {group}."),
            );
        }
    }
    let names: Vec<String> = file.specs().iter().map(|s| s.name.clone()).collect();
    let mark_taken = |file: &mut ImportFile, taken: &std::collections::HashSet<String>| {
        for row in &mut file.rows {
            if row.spec.as_ref().is_some_and(|s| taken.contains(&s.name)) {
                row.reject("name", "A VM with this name already exists.");
            }
        }
    };
    if dry_run || !file.is_ok() {
        let taken = store.taken_vm_names(&names).await?;
        mark_taken(&mut file, &taken);
        return Ok(ImportOutcome {
            file,
            added: Vec::new(),
        });
    }
    let mut tx = store.begin_write().await?;
    // Asked again under the write lock: a VM added since the preview is seen here.
    let taken = tx.taken_vm_names(&names).await?;
    if !taken.is_empty() {
        mark_taken(&mut file, &taken);
        return Ok(ImportOutcome {
            file,
            added: Vec::new(),
        });
    }
    let count = names.len();
    let mut added = Vec::with_capacity(count);
    for spec in file.specs() {
        let id = tx.insert_vm(&fields(spec)).await.map_err(duplicate_name)?;
        let mut log = actor.entry("vm.create", &spec.name);
        log.detail = format!(
            "group {}, {}, addresses {}; one of {count} imported together",
            spec.group,
            spec.os.as_str(),
            spec.addresses_text()
        );
        tx.log(log).await?;
        added.push(id);
    }
    tx.commit().await?;
    Ok(ImportOutcome { file, added })
}

/// Edits a VM. Moving it to another group changes who may request on it, so the grants
/// and waiting requests of users who lose that right end in the same transaction.
pub async fn update_vm(store: &Store, actor: &Actor, vm_id: &str, spec: VmSpec) -> AppResult<()> {
    let vm = visible_vm(store, actor, vm_id).await?;
    require(actor, Action::ManageVm, &vm_resource(&vm))?;
    require(
        actor,
        Action::ManageVm,
        &Resource::Vm {
            id: vm.id.clone(),
            group: spec.group.clone(),
        },
    )?;
    let mut log = actor.entry("vm.update", &spec.name);
    log.detail = format!(
        "group {}, {}, addresses {}",
        spec.group,
        spec.os.as_str(),
        spec.addresses_text()
    );
    let mut tx = store.begin_write().await?;
    let before = tx
        .vm(vm_id)
        .await?
        .ok_or_else(|| AppError::NotFound("The VM".into()))?;
    // Its group as it is now: a VM moved out of the actor's scope meanwhile stays out.
    require(actor, Action::ManageVm, &vm_resource(&before))?;
    if !tx
        .update_vm(vm_id, &fields(&spec))
        .await
        .map_err(duplicate_name)?
    {
        return Err(AppError::NotFound("The VM".into()));
    }
    tx.log(log).await?;
    if before.group != spec.group {
        let users = tx.users_with_open_access(Some(vm_id)).await?;
        let ip = actor.ip.to_string();
        reconcile_users(
            &mut tx,
            &users,
            By {
                actor: &actor.username,
                ip: &ip,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes a VM. Its grants end and its waiting requests close first, through the one
/// ending path and in the same transaction, so that the log says what ended and why; the
/// VM's agent is refused from then on and withdraws every grant.
pub async fn delete_vm(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<()> {
    let vm = visible_vm(store, actor, vm_id).await?;
    require(actor, Action::ManageVm, &vm_resource(&vm))?;
    let ip = actor.ip.to_string();
    let ending = Ending {
        status: PortStatus::Revoked,
        reason: reason::VM_REMOVED,
        actor: &actor.username,
        client_ip: &ip,
        action: "revoke",
        result: "success",
    };
    let mut tx = store.begin_write().await?;
    let grants = tx.open_grants(GrantFilter::Vm(vm_id)).await?;
    super::notify::grants_ended(&mut tx, &grants, ending.actor, ending.reason).await?;
    tx.end_grants(&grants, &ending).await?;
    let waiting = tx.waiting_requests(WaitingFilter::Vm(vm_id)).await?;
    tx.close_requests(
        &waiting,
        &Ending {
            status: PortStatus::Cancelled,
            action: "request.cancel",
            result: "cancelled",
            ..ending
        },
        None,
    )
    .await?;
    if !tx.delete_vm(vm_id).await? {
        return Err(AppError::NotFound("The VM".into()));
    }
    tx.log(actor.entry("vm.delete", &vm.name)).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list_vms(
    store: &Store,
    actor: &Actor,
    mut query: VmListQuery,
) -> AppResult<(Vec<VmSummary>, TabCounts)> {
    query.scope = visibility(&actor.roles, Action::ViewVm);
    Ok(store.list_vms(&query).await?)
}

pub fn parse_tab(raw: &str) -> VmTab {
    match raw {
        "recommended" => VmTab::Recommended,
        "not_configured" => VmTab::NotConfigured,
        "unsupported" => VmTab::Unsupported,
        "all" => VmTab::All,
        _ => VmTab::Configured,
    }
}

fn same_policy(a: Option<&JitPolicy>, b: Option<&JitPolicy>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_rules(b),
        _ => false,
    }
}

/// When the VMs of a bulk edit have different policies: what each would lose or see
/// changed, one line per VM. `None` when their policies agree (or there is one VM).
pub fn differing_policies(
    current: &[(StoredVm, Option<JitPolicy>)],
    new: Option<&JitPolicy>,
) -> Option<Vec<String>> {
    let differ = current
        .windows(2)
        .any(|w| !same_policy(w[0].1.as_ref(), w[1].1.as_ref()));
    if !differ {
        return None;
    }
    Some(
        current
            .iter()
            .map(|(vm, policy)| match (policy, new) {
                (None, _) => format!("{}: has no policy yet", vm.name),
                (Some(p), Some(new)) => {
                    let changes = p.changes_to(new);
                    if changes.is_empty() {
                        format!("{}: no change", vm.name)
                    } else {
                        format!("{}: {}", vm.name, changes.join("; "))
                    }
                }
                (Some(p), None) => format!(
                    "{}: {}",
                    vm.name,
                    p.rules
                        .iter()
                        .map(|r| r.summary())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            })
            .collect(),
    )
}

/// The VMs of a bulk edit with their current policies, after checking the actor may
/// configure each of them.
pub async fn policies_for_edit(
    store: &Store,
    actor: &Actor,
    vm_ids: &[String],
) -> AppResult<Vec<(StoredVm, Option<JitPolicy>)>> {
    if vm_ids.is_empty() {
        return Err(AppError::field("vms", "Select at least one VM."));
    }
    if vm_ids.len() > 500 {
        return Err(AppError::field("vms", "At most 500 VMs at once."));
    }
    let vms = visible_vms(store, actor, vm_ids, |vm| {
        require(actor, Action::ConfigurePolicy, &vm_resource(vm))
    })
    .await?;
    let ids: Vec<String> = vms.iter().map(|vm| vm.id.clone()).collect();
    let mut policies = store.get_policies(&ids).await?;
    Ok(vms
        .into_iter()
        .map(|vm| {
            let policy = policies.remove(&vm.id);
            (vm, policy)
        })
        .collect())
}

/// What a policy edit does to one grant in force, decided by the domain.
fn fate_of(policy: &JitPolicy, g: &OpenGrant, now: i64) -> GrantFate {
    let port = u16::try_from(g.port).ok().and_then(Port::new);
    let protocol = Protocol::parse(&g.protocol).ok();
    let (Some(port), Some(protocol)) = (port, protocol) else {
        return GrantFate::End(reason::PORT_REMOVED);
    };
    let Ok(source) = Cidr::parse(&g.source) else {
        return GrantFate::End(reason::SOURCE_OUTSIDE);
    };
    grant_fate(
        policy,
        port,
        protocol,
        &source,
        g.window_start,
        g.end_at,
        now,
    )
}

/// Applies one policy to every listed VM in one transaction, after checking the actor may
/// configure each. In the same transaction, grants in force that no longer fit the new
/// rules end or are shortened, and waiting requests that no longer fit are closed.
///
/// VMs whose current policies differ are only overwritten together with
/// `replace_differing`; otherwise the answer lists what each VM would lose.
pub async fn enable_jit(
    store: &Store,
    actor: &Actor,
    vm_ids: &[String],
    rows: &[PortRuleInput],
    replace_differing: bool,
) -> AppResult<()> {
    let policy = JitPolicy::parse(rows)?;
    let checked = policies_for_edit(store, actor, vm_ids).await?;
    let refuse_differing = |current: &[(StoredVm, Option<JitPolicy>)]| match differing_policies(
        current,
        Some(&policy),
    ) {
        Some(lines) if !replace_differing => Err(AppError::field(
            "replace_differing",
            format!(
                "The selected VMs have different JIT policies; saving replaces each with this one. {}. \
                     Confirm that the differing policies may be replaced, or edit the VMs one at a time.",
                lines.join(". ")
            ),
        )),
        _ => Ok(()),
    };
    refuse_differing(&checked)?;
    let ports = policy
        .rules
        .iter()
        .map(|r| format!("{}/{}", r.port, r.protocol.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let detail = policy
        .rules
        .iter()
        .map(|r| r.summary())
        .collect::<Vec<_>>()
        .join("; ");
    let ip = actor.ip.to_string();
    let mut tx = store.begin_write().await?;
    // Decided again as the transaction sees it: a VM moved out of the actor's scope, or a
    // policy another administrator just changed, is not overwritten unseen.
    let mut current = Vec::with_capacity(checked.len());
    for (vm, _) in &checked {
        let vm = tx
            .vm(&vm.id)
            .await?
            .ok_or_else(|| AppError::NotFound("The VM".into()))?;
        require(actor, Action::ConfigurePolicy, &vm_resource(&vm))?;
        let policy_now = tx.policy(&vm.id).await?;
        current.push((vm, policy_now));
    }
    refuse_differing(&current)?;
    for (vm, existed) in &current {
        let mut log = actor.entry(
            if existed.is_some() {
                "policy.update"
            } else {
                "policy.create"
            },
            &vm.name,
        );
        log.ports = ports.clone();
        log.detail = detail.clone();
        tx.set_policy(&vm.id, &policy, &actor.username).await?;
        tx.log(log).await?;
        let ending = |why| Ending {
            status: PortStatus::Revoked,
            reason: why,
            actor: &actor.username,
            client_ip: &ip,
            action: "revoke",
            result: "success",
        };
        let now = tx.now;
        let mut shorten = Vec::new();
        for g in tx.open_grants(GrantFilter::Vm(&vm.id)).await? {
            match fate_of(&policy, &g, now) {
                GrantFate::Keep => {}
                GrantFate::Shorten(end) => shorten.push((g, end)),
                GrantFate::End(why) => {
                    let g = std::slice::from_ref(&g);
                    super::notify::grants_ended(&mut tx, g, &actor.username, why).await?;
                    tx.end_grants(g, &ending(why)).await?;
                }
            }
        }
        tx.shorten_grants(
            &shorten,
            &Ending {
                action: "shorten",
                ..ending(reason::SHORTENED)
            },
        )
        .await?;
        for w in tx.waiting_requests(WaitingFilter::Vm(&vm.id)).await? {
            if let Err(misfit) = recheck_stored(&policy, &w) {
                tx.close_requests(
                    std::slice::from_ref(&w),
                    &Ending {
                        status: PortStatus::Cancelled,
                        action: "request.cancel",
                        result: "cancelled",
                        ..ending(misfit)
                    },
                    None,
                )
                .await?;
            } else {
                let ports: Vec<(Port, Protocol)> = w
                    .ports
                    .iter()
                    .filter_map(|(port, protocol)| {
                        Some((
                            u16::try_from(*port).ok().and_then(Port::new)?,
                            Protocol::parse(protocol).ok()?,
                        ))
                    })
                    .collect();
                if let Some(timeout) = ports
                    .iter()
                    .filter_map(|(port, protocol)| {
                        let rule = policy.rule_covering(*port, *protocol)?;
                        rule.approval_required.then(|| rule.approval_timeout.secs())
                    })
                    .min()
                {
                    // A changed time-out applies to the requests already waiting (a booked
                    // window keeps until its start, as when it was made).
                    let deadline = crate::domain::request::approval_deadline(
                        w.created_at,
                        timeout,
                        w.planned_start_at,
                        w.duration_secs,
                    );
                    tx.set_approval_deadline(&w.id, deadline).await?;
                }
                // So does a changed number of approvers (the requests list shows it; each
                // approval decides it again from the policy in force).
                let required = i64::from(policy.approvals_required(&ports).get());
                if required != w.approvals_required {
                    tx.set_approvals_required(&w.id, required).await?;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Whether a waiting request still fits `policy`: the reason it does not, if so.
fn recheck_stored(policy: &JitPolicy, w: &WaitingRequest) -> Result<(), &'static str> {
    let ports = w
        .ports
        .iter()
        .map(|(port, protocol)| {
            Some((
                u16::try_from(*port).ok().and_then(Port::new)?,
                Protocol::parse(protocol).ok()?,
            ))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(reason::PORT_REMOVED)?;
    let source = Cidr::parse(&w.source).map_err(|_| reason::SOURCE_OUTSIDE)?;
    recheck_request(Some(policy), &ports, &source, w.duration_secs).map_err(|m| m.reason)
}

/// Removes a VM's policy: every grant on it ends and every waiting request is closed, in
/// the same transaction.
pub async fn remove_policy(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<()> {
    let vm = visible_vm(store, actor, vm_id).await?;
    require(actor, Action::ConfigurePolicy, &vm_resource(&vm))?;
    let ip = actor.ip.to_string();
    let ending = Ending {
        status: PortStatus::Revoked,
        reason: reason::POLICY_REMOVED,
        actor: &actor.username,
        client_ip: &ip,
        action: "revoke",
        result: "success",
    };
    let mut tx = store.begin_write().await?;
    if !tx.delete_policy(vm_id).await? {
        return Err(AppError::NotFound("The JIT policy".into()));
    }
    tx.log(actor.entry("policy.delete", &vm.name)).await?;
    let grants = tx.open_grants(GrantFilter::Vm(vm_id)).await?;
    super::notify::grants_ended(&mut tx, &grants, ending.actor, ending.reason).await?;
    tx.end_grants(&grants, &ending).await?;
    let waiting = tx.waiting_requests(WaitingFilter::Vm(vm_id)).await?;
    tx.close_requests(
        &waiting,
        &Ending {
            status: PortStatus::Cancelled,
            action: "request.cancel",
            result: "cancelled",
            ..ending
        },
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Finds a VM the actor may see by id or, failing that, by name: scripts name VMs, the
/// portal passes ids.
pub async fn find_vm(store: &Store, actor: &Actor, id_or_name: &str) -> AppResult<StoredVm> {
    let id = match store.get_vm(id_or_name).await? {
        Some(vm) => vm.id,
        None => store
            .get_vm_by_name(id_or_name)
            .await?
            .map(|vm| vm.id)
            .ok_or_else(|| AppError::NotFound("The VM".into()))?,
    };
    visible_vm(store, actor, &id).await
}

/// One VM with the figures of the JIT tabs.
pub async fn vm_summary(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<VmSummary> {
    let vm = visible_vm(store, actor, vm_id).await?;
    let query = VmListQuery {
        tab: VmTab::All,
        search: String::new(),
        sort: "name".into(),
        desc: false,
        offset: 0,
        limit: 1,
        scope: Default::default(),
        only_id: Some(vm.id),
    };
    let (rows, _) = list_vms(store, actor, query).await?;
    rows.into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("The VM".into()))
}

/// The policy of a VM the actor may see; `None` when it has none.
pub async fn policy_of(
    store: &Store,
    actor: &Actor,
    vm_id: &str,
) -> AppResult<(StoredVm, Option<JitPolicy>)> {
    let vm = visible_vm(store, actor, vm_id).await?;
    let policy = store.get_policy(&vm.id).await?;
    Ok((vm, policy))
}

/// The policies of the VMs the actor may see, by VM name, at most `limit`.
pub async fn list_policies(
    store: &Store,
    actor: &Actor,
    offset: i64,
    limit: i64,
) -> AppResult<(Vec<(StoredVm, JitPolicy)>, i64)> {
    let query = VmListQuery {
        tab: VmTab::Configured,
        search: String::new(),
        sort: "name".into(),
        desc: false,
        offset,
        limit,
        scope: Default::default(),
        only_id: None,
    };
    let (rows, counts) = list_vms(store, actor, query).await?;
    let total = counts.configured;
    let ids: Vec<String> = rows.iter().map(|r| r.vm.id.clone()).collect();
    let mut policies = store.get_policies(&ids).await?;
    // A policy removed since the page was read is left out, as before.
    let out = rows
        .into_iter()
        .filter_map(|row| {
            let policy = policies.remove(&row.vm.id)?;
            Some((row.vm, policy))
        })
        .collect();
    Ok((out, total))
}

/// Whether the server lacks the agent binary (or its checksum) that the install line
/// downloads from `{site_root}/downloads/`: the page then warns instead of showing a line
/// that fails half-way.
pub fn agent_download_missing(site_root: &str) -> bool {
    let dir = std::path::Path::new(site_root).join("downloads");
    let name = crate::domain::enroll::AGENT_DOWNLOAD;
    !(dir.join(name).is_file() && dir.join(format!("{name}.sha256")).is_file())
}
