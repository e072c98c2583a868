//! VM inventory and JIT policies.

use super::Actor;
use crate::domain::jit::JitPolicy;
use crate::domain::jit::PortRuleInput;
use crate::domain::vm::VmSpec;
use crate::domain::{Action, Resource, permits, visibility};
use crate::error::{AppError, AppResult};
use crate::store::{Store, StoreError, StoredVm, VmFields, VmListQuery, VmSummary, VmTab};

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
    if store
        .update_vm(vm_id, &fields(&spec), log)
        .await
        .map_err(duplicate_name)?
    {
        Ok(())
    } else {
        Err(AppError::NotFound("The VM".into()))
    }
}

pub async fn delete_vm(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<()> {
    let vm = visible_vm(store, actor, vm_id).await?;
    require(actor, Action::ManageVm, &vm_resource(&vm))?;
    if store
        .delete_vm(vm_id, actor.entry("vm.delete", &vm.name))
        .await?
    {
        Ok(())
    } else {
        Err(AppError::NotFound("The VM".into()))
    }
}

pub async fn list_vms(
    store: &Store,
    actor: &Actor,
    mut query: VmListQuery,
) -> AppResult<(Vec<VmSummary>, i64)> {
    query.scope = visibility(&actor.roles, Action::ViewVm);
    Ok(store.list_vms(&query).await?)
}

pub fn parse_tab(raw: &str) -> VmTab {
    match raw {
        "recommended" => VmTab::Recommended,
        "not_configured" => VmTab::NotConfigured,
        "all" => VmTab::All,
        _ => VmTab::Configured,
    }
}

/// Applies one policy to every listed VM in one transaction, after checking the actor may
/// configure each of them.
pub async fn enable_jit(
    store: &Store,
    actor: &Actor,
    vm_ids: &[String],
    rows: &[PortRuleInput],
) -> AppResult<()> {
    if vm_ids.is_empty() {
        return Err(AppError::field("vms", "Select at least one VM."));
    }
    if vm_ids.len() > 500 {
        return Err(AppError::field("vms", "At most 500 VMs at once."));
    }
    let policy = JitPolicy::parse(rows)?;
    let mut logs = Vec::new();
    let ports = policy
        .rules
        .iter()
        .map(|r| format!("{}/{}", r.port, r.protocol.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    for id in vm_ids {
        let vm = visible_vm(store, actor, id).await?;
        require(actor, Action::ConfigurePolicy, &vm_resource(&vm))?;
        let action = if store.get_policy(id).await?.is_some() {
            "policy.update"
        } else {
            "policy.create"
        };
        let mut log = actor.entry(action, &vm.name);
        log.ports = ports.clone();
        log.detail = policy
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{}/{}: sources {}, max {} min{}{}",
                    r.port,
                    r.protocol.as_str(),
                    r.allowed_sources,
                    r.max_duration.secs() / 60,
                    if r.justification_required {
                        ", justification required"
                    } else {
                        ""
                    },
                    if r.approval_required {
                        ", approval required"
                    } else {
                        ""
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        logs.push(log);
    }
    store
        .set_policies(vm_ids, &policy, &actor.username, logs)
        .await?;
    Ok(())
}

pub async fn remove_policy(store: &Store, actor: &Actor, vm_id: &str) -> AppResult<()> {
    let vm = visible_vm(store, actor, vm_id).await?;
    require(actor, Action::ConfigurePolicy, &vm_resource(&vm))?;
    if store
        .delete_policy(vm_id, actor.entry("policy.delete", &vm.name))
        .await?
    {
        Ok(())
    } else {
        Err(AppError::NotFound("The JIT policy".into()))
    }
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
    let (rows, total) = list_vms(store, actor, query).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(policy) = store.get_policy(&row.vm.id).await? {
            out.push((row.vm, policy));
        }
    }
    Ok((out, total))
}
