//! JIT policies in the shape of Azure's `jitNetworkAccessPolicies`, one policy per VM,
//! and `initiate` on a VM's policy.

use super::dto::{
    InitiateInput, PageQuery, PolicyDto, PolicyInput, PolicyList, PolicyPortDto, PolicyVmDto,
    RequestDto,
};
use super::input::{ApiErrors, check_body_vm};
use super::requests::{initiate_requests, request_dto};
use super::vms::{paging, protocol_label};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Caller};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_app::domain::iso_duration::{format_iso_duration, parse_iso_duration};
use portcullis_app::domain::jit::{AllowedSources, JitPolicy, PortRuleInput};
use portcullis_app::services::jit;
use portcullis_app::state::AppState;
use portcullis_app::store::StoredVm;

pub fn policy_dto(vm: &StoredVm, policy: &JitPolicy) -> PolicyDto {
    let ports = policy
        .rules
        .iter()
        .map(|r| {
            let (one, many) = match &r.allowed_sources {
                AllowedSources::PerRequest => (Some("*".to_owned()), None),
                AllowedSources::List(list) => {
                    (None, Some(list.iter().map(ToString::to_string).collect()))
                }
            };
            PolicyPortDto {
                number: i64::from(r.port.get()),
                protocol: protocol_label(r.protocol.as_str()),
                allowed_source_address_prefix: one,
                allowed_source_address_prefixes: many,
                max_request_access_duration: format_iso_duration(r.max_duration.secs()),
                justification_required: r.justification_required,
                approval_required: r.approval_required,
                approval_timeout: format_iso_duration(r.approval_timeout.secs()),
                approvals_required: i64::from(r.approvals_required.get()),
                max_schedule_ahead: format_iso_duration(r.max_lead.secs()),
                widest_source_prefix_ipv4: i64::from(r.widest_source.v4),
                widest_source_prefix_ipv6: i64::from(r.widest_source.v6),
            }
        })
        .collect();
    PolicyDto {
        id: vm.id.clone(),
        name: vm.name.clone(),
        kind: "Basic".into(),
        provisioning_state: "Succeeded".into(),
        virtual_machines: vec![PolicyVmDto {
            id: vm.id.clone(),
            name: vm.name.clone(),
            ports,
        }],
        replaced: None,
    }
}

/// Translates the Azure-shaped ports into the form rows the service parses, and maps the
/// service's field names back to JSON paths. Pure, so that it is unit-tested.
pub fn policy_rows(input: &PolicyInput) -> ApiResult<Vec<PortRuleInput>> {
    if input.virtual_machines.len() != 1 {
        return Err(ApiError::field(
            "virtualMachines",
            "A policy belongs to one VM: give exactly one entry, the VM in the path.",
        ));
    }
    let vm = &input.virtual_machines[0];
    let mut errors = ApiErrors::default();
    let mut rows = Vec::new();
    for (i, p) in vm.ports.iter().enumerate() {
        let at = |f: &str| format!("virtualMachines[0].ports[{i}].{f}");
        let sources = match (
            &p.allowed_source_address_prefix,
            &p.allowed_source_address_prefixes,
        ) {
            (Some(_), Some(_)) => {
                errors.add(
                    at("allowedSourceAddressPrefixes"),
                    "Give allowedSourceAddressPrefix or allowedSourceAddressPrefixes, not both.",
                );
                String::new()
            }
            (Some(one), None) if one.trim().is_empty() => {
                errors.add(
                    at("allowedSourceAddressPrefix"),
                    "Give * (the requester names the source) or a CIDR.",
                );
                String::new()
            }
            (Some(one), None) if one.contains([',', ' ']) => {
                errors.add(
                    at("allowedSourceAddressPrefix"),
                    "One prefix only; use allowedSourceAddressPrefixes for several.",
                );
                String::new()
            }
            (Some(one), None) => one.clone(),
            (None, Some(list)) if list.is_empty() => {
                errors.add(
                    at("allowedSourceAddressPrefixes"),
                    "Give at least one prefix, or allowedSourceAddressPrefix \"*\".",
                );
                String::new()
            }
            (None, Some(list)) => {
                if list.iter().any(|s| s.trim() == "*") {
                    errors.add(
                        at("allowedSourceAddressPrefixes"),
                        "\"*\" cannot be one of several prefixes; use allowedSourceAddressPrefix \"*\".",
                    );
                }
                if list
                    .iter()
                    .any(|s| s.trim().is_empty() || s.contains([',', ' ']))
                {
                    errors.add(
                        at("allowedSourceAddressPrefixes"),
                        "Each entry is one IPv4 or IPv6 CIDR.",
                    );
                }
                list.join(",")
            }
            (None, None) => "*".into(),
        };
        let max_minutes = match &p.max_request_access_duration {
            None => String::new(),
            Some(raw) => match parse_iso_duration(raw) {
                Ok(secs) if secs % 60 != 0 => {
                    errors.add(
                        at("maxRequestAccessDuration"),
                        "Give whole minutes, e.g. PT90M.",
                    );
                    String::new()
                }
                Ok(secs) => (secs / 60).to_string(),
                Err(e) => {
                    errors.add(at("maxRequestAccessDuration"), e.to_string());
                    String::new()
                }
            },
        };
        let lead_days = match &p.max_schedule_ahead {
            None => String::new(),
            Some(raw) => match parse_iso_duration(raw) {
                Ok(secs) if secs % 86_400 != 0 => {
                    errors.add(at("maxScheduleAhead"), "Give whole days, e.g. P7D.");
                    String::new()
                }
                Ok(secs) => (secs / 86_400).to_string(),
                Err(e) => {
                    errors.add(at("maxScheduleAhead"), e.to_string());
                    String::new()
                }
            },
        };
        let approval_minutes = match &p.approval_timeout {
            None => String::new(),
            Some(raw) => match parse_iso_duration(raw) {
                Ok(secs) if secs % 60 != 0 => {
                    errors.add(at("approvalTimeout"), "Give whole minutes, e.g. PT30M.");
                    String::new()
                }
                Ok(secs) => (secs / 60).to_string(),
                Err(e) => {
                    errors.add(at("approvalTimeout"), e.to_string());
                    String::new()
                }
            },
        };
        let prefix = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
        rows.push(PortRuleInput {
            enabled: Some("on".into()),
            port: p.number.to_string(),
            protocol: p.protocol.clone(),
            allowed_sources: sources,
            max_minutes,
            justification_required: p.justification_required.then(|| "on".into()),
            approval_required: p.approval_required.then(|| "on".into()),
            approval_minutes,
            approvals_required: p
                .approvals_required
                .map(|n| n.to_string())
                .unwrap_or_default(),
            lead_days,
            widest_v4: prefix(p.widest_source_prefix_ipv4),
            widest_v6: prefix(p.widest_source_prefix_ipv6),
        });
    }
    errors.finish()?;
    Ok(rows)
}

/// The service names policy fields after the form (`rules[2].max_minutes`); the API
/// names them after the JSON that was sent.
fn rename_policy_field(input: &PolicyInput, field: &str) -> String {
    let Some(rest) = field.strip_prefix("rules[") else {
        return match field {
            "rules" => "virtualMachines[0].ports".into(),
            "vms" => "virtualMachines".into(),
            other => other.into(),
        };
    };
    let Some((index, name)) = rest.split_once("].") else {
        return field.into();
    };
    let json = match name {
        "port" => "number",
        "protocol" => "protocol",
        "max_minutes" => "maxRequestAccessDuration",
        "approval_minutes" => "approvalTimeout",
        "approvals_required" => "approvalsRequired",
        "lead_days" => "maxScheduleAhead",
        "widest_v4" => "widestSourcePrefixIpv4",
        "widest_v6" => "widestSourcePrefixIpv6",
        "allowed_sources" => {
            let many = index
                .parse::<usize>()
                .ok()
                .and_then(|i| input.virtual_machines.first()?.ports.get(i))
                .is_some_and(|p| p.allowed_source_address_prefixes.is_some());
            if many {
                "allowedSourceAddressPrefixes"
            } else {
                "allowedSourceAddressPrefix"
            }
        }
        other => other,
    };
    format!("virtualMachines[0].ports[{index}].{json}")
}

/// The JIT policies of the VMs you may see.
#[utoipa::path(get, path = "/api/v1/jitPolicies", tag = "jit",
    params(PageQuery),
    responses(
        (status = 200, body = PolicyList),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn list_policies(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<PolicyList>> {
    let (page, size) = paging(q.page, q.page_size)?;
    let (list, total) = jit::list_policies(&state.store, &actor, (page - 1) * size, size).await?;
    Ok(Json(PolicyList {
        value: list.iter().map(|(vm, p)| policy_dto(vm, p)).collect(),
        total,
    }))
}

/// A VM's JIT policy.
#[utoipa::path(get, path = "/api/v1/jitPolicies/{vm}", tag = "jit",
    params(("vm" = String, Path, description = "The VM's id or name")),
    responses(
        (status = 200, body = PolicyDto),
        (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody, description = "No such VM, or it has no policy"),
    ))]
pub async fn get_policy(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
) -> ApiResult<Json<PolicyDto>> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    match jit::policy_of(&state.store, &actor, &vm.id).await? {
        (vm, Some(policy)) => Ok(Json(policy_dto(&vm, &policy))),
        (_, None) => Err(portcullis_app::error::AppError::NotFound("The JIT policy".into()).into()),
    }
}

/// Creates or replaces a VM's JIT policy. Grants on ports the new policy drops end.
#[utoipa::path(put, path = "/api/v1/jitPolicies/{vm}", tag = "jit",
    params(("vm" = String, Path, description = "The VM's id or name")),
    request_body = PolicyInput,
    responses(
        (status = 200, body = PolicyDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn put_policy(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> ApiResult<Json<PolicyDto>> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    let rows = policy_rows(&input)?;
    check_body_vm(
        input.virtual_machines[0].id.as_deref(),
        &vm,
        "virtualMachines[0].id",
    )?;
    let (_, before) = jit::policy_of(&state.store, &actor, &vm.id).await?;
    // One VM per call: the path names exactly the VM whose policy is replaced.
    jit::enable_jit(
        &state.store,
        &actor,
        std::slice::from_ref(&vm.id),
        &rows,
        false,
    )
    .await
    .map_err(|e| ApiError::from_app(e, &|f| rename_policy_field(&input, f)))?;
    state.expiry_wake.notify_one();
    match jit::policy_of(&state.store, &actor, &vm.id).await? {
        (vm, Some(policy)) => {
            let mut dto = policy_dto(&vm, &policy);
            dto.replaced = Some(before.map(|b| b.changes_to(&policy)).unwrap_or_default());
            Ok(Json(dto))
        }
        (_, None) => Err(portcullis_app::error::AppError::Internal.into()),
    }
}

/// Removes a VM's JIT policy; its grants end at once.
#[utoipa::path(delete, path = "/api/v1/jitPolicies/{vm}", tag = "jit",
    params(("vm" = String, Path, description = "The VM's id or name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn delete_policy(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    jit::remove_policy(&state.store, &actor, &vm.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Requests access to ports of this VM (Azure's `initiate`). Opens at once, or waits for
/// an approver when a port's rule requires approval.
#[utoipa::path(post, path = "/api/v1/jitPolicies/{vm}/initiate", tag = "jit",
    params(("vm" = String, Path, description = "The VM's id or name")),
    request_body = InitiateInput,
    responses(
        (status = 202, body = RequestDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn initiate(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
    ApiJson(input): ApiJson<InitiateInput>,
) -> ApiResult<(StatusCode, Json<RequestDto>)> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    if input.virtual_machines.len() != 1 {
        return Err(ApiError::field(
            "virtualMachines",
            "Give exactly one entry, the VM in the path; POST /api/v1/requests takes several.",
        ));
    }
    check_body_vm(
        input.virtual_machines[0].id.as_deref(),
        &vm,
        "virtualMachines[0].id",
    )?;
    let mut created = initiate_requests(&state, &actor, &input, &[vm]).await?;
    let first = created
        .pop()
        .ok_or(portcullis_app::error::AppError::Internal)?;
    Ok((StatusCode::ACCEPTED, Json(request_dto(first))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> PolicyInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn azure_ports_become_form_rows() {
        let rows = policy_rows(&input(serde_json::json!({"virtualMachines":[{"ports":[
            {"number":22,"protocol":"TCP","allowedSourceAddressPrefix":"*","maxRequestAccessDuration":"PT3H"},
            {"number":3389,"protocol":"*","allowedSourceAddressPrefixes":["198.51.100.0/24","2001:db8::/32"],
             "approvalRequired":true, "approvalsRequired":3}
        ]}]})))
        .unwrap();
        assert_eq!(rows[0].port, "22");
        assert_eq!(rows[0].allowed_sources, "*");
        assert_eq!(rows[0].max_minutes, "180");
        assert_eq!(rows[1].allowed_sources, "198.51.100.0/24,2001:db8::/32");
        assert_eq!(rows[1].max_minutes, "");
        assert!(rows[1].approval_required.is_some());
        assert_eq!(rows[1].approvals_required, "3");
        assert_eq!(rows[0].approvals_required, "");
        let policy = JitPolicy::parse(&rows).unwrap();
        assert_eq!(policy.rules[1].approvals_required.get(), 3);
    }

    #[test]
    fn bad_ports_are_named_by_json_path() {
        let i = input(serde_json::json!({"virtualMachines":[{"ports":[
            {"number":22,"protocol":"TCP","maxRequestAccessDuration":"PT90S"},
            {"number":23,"protocol":"TCP","allowedSourceAddressPrefix":"*","allowedSourceAddressPrefixes":["10.0.0.0/8"]}
        ]}]}));
        let e = policy_rows(&i).unwrap_err();
        assert!(
            e.fields
                .contains_key("virtualMachines[0].ports[0].maxRequestAccessDuration")
        );
        assert!(
            e.fields
                .contains_key("virtualMachines[0].ports[1].allowedSourceAddressPrefixes")
        );
        assert_eq!(
            rename_policy_field(&i, "rules[1].max_minutes"),
            "virtualMachines[0].ports[1].maxRequestAccessDuration"
        );
        assert_eq!(
            rename_policy_field(&i, "rules[0].port"),
            "virtualMachines[0].ports[0].number"
        );
        assert_eq!(
            rename_policy_field(&i, "rules[1].approvals_required"),
            "virtualMachines[0].ports[1].approvalsRequired"
        );
    }
}
