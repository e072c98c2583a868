//! Access requests: initiate (on one or several VMs), list, read, approve, deny, revoke,
//! extend. Requests carry Azure's per-port `status` and `statusReason`.

use super::dto::{
    DecisionInput, ExtendInput, InitiateInput, RequestDto, RequestList, RequestListQuery,
    RequestPortDto, RequestVmDto,
};
use super::input::{ApiErrors, check_body_vm};
use super::vms::protocol_label;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Caller, OptionalJson, utc};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use portcullis_app::domain::iso_duration::{format_iso_duration, parse_iso_duration};
use portcullis_app::domain::jit::{Port, Protocol};
use portcullis_app::domain::request::{PortStatus, RequestStatus, parse_instant, window_end};
use portcullis_app::services::{Actor, jit, requests};
use portcullis_app::state::AppState;
use portcullis_app::store::{StoredRequest, StoredVm};

fn request_status(s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::PendingApproval => "PendingApproval",
        RequestStatus::Approved => "Approved",
        RequestStatus::Active => "Active",
        RequestStatus::Expired => "Expired",
        RequestStatus::Denied => "Denied",
        RequestStatus::Revoked => "Revoked",
        RequestStatus::Failed => "Failed",
        RequestStatus::Cancelled => "Cancelled",
    }
}

/// A port's status as the API reports it. A port in force is `Initiated` until the VM's
/// agent reports it applied, then `Active`, as Azure says `Initiated` once the rule is
/// being put in place.
fn port_status(r: &StoredRequest, status: PortStatus, reason: &str) -> (String, String) {
    let label = match status {
        PortStatus::Pending => "Pending",
        PortStatus::Active => {
            use portcullis_app::domain::enforcement::{Grant, grant};
            return match grant(r.vm_has_agent, r.enforced_at.is_some(), &r.vm_agent_error) {
                Grant::NoAgent => (
                    "Initiated".into(),
                    "Not enforced: the VM has no agent.".into(),
                ),
                Grant::Waiting => ("Initiated".into(), "Waiting for the VM's agent.".into()),
                Grant::Failed => (
                    "Initiated".into(),
                    format!("The VM's agent could not apply it: {}", r.vm_agent_error),
                ),
                Grant::Applied => ("Active".into(), "Applied by the VM's agent.".into()),
            };
        }
        PortStatus::Expired => "Expired",
        PortStatus::Revoked => "Revoked",
        PortStatus::Denied => "Denied",
        PortStatus::Superseded => "Superseded",
        PortStatus::Failed => "Failed",
        PortStatus::Cancelled => "Cancelled",
    };
    let reason = if reason.is_empty() && status == PortStatus::Pending {
        "Waiting for approval.".to_owned()
    } else {
        reason.to_owned()
    };
    (label.into(), reason)
}

pub fn request_dto(r: StoredRequest) -> RequestDto {
    let ports = r
        .ports
        .iter()
        .map(|p| {
            let (status, status_reason) = port_status(&r, p.status, &p.status_reason);
            RequestPortDto {
                number: p.port,
                protocol: protocol_label(&p.protocol),
                allowed_source_address_prefix: r.source.clone(),
                end_time_utc: p.end_at.or(r.end_at).map(utc),
                status,
                status_reason,
            }
        })
        .collect();
    RequestDto {
        status: request_status(r.status).into(),
        requestor: r.requester.clone(),
        justification: r.justification.clone(),
        duration: format_iso_duration(r.duration_secs),
        created_utc: utc(r.created_at),
        start_time_utc: r.start_at.or(r.planned_start_at).map(utc),
        end_time_utc: r
            .end_at
            .or(r.planned_start_at.map(|s| window_end(s, r.duration_secs)))
            .map(utc),
        decided_by: r.decided_by.clone(),
        decision_comment: r.decision_comment.clone(),
        virtual_machines: vec![RequestVmDto {
            id: r.vm_id.clone(),
            name: r.vm_name.clone(),
            ports,
        }],
        approvals: r.approvals,
        approvals_required: r.approvals_required,
        id: r.id,
    }
}

/// What one requested port asks for once its JSON is read.
struct Asked {
    port: Port,
    protocol: Option<Protocol>,
    source: Option<String>,
    minutes: Option<i64>,
}

/// Reads one port's JSON; errors are keyed by its JSON path.
fn read_port(
    p: &super::dto::InitiatePortInput,
    at: &dyn Fn(&str) -> String,
    now_ms: i64,
    errors: &mut ApiErrors,
) -> Option<Asked> {
    let port = match Port::parse(&p.number.to_string()) {
        Ok(port) => Some(port),
        Err(e) => {
            errors.add(at("number"), e.to_string());
            None
        }
    };
    let protocol = match p.protocol.as_deref().map(Protocol::parse) {
        None => None,
        Some(Ok(pr)) => Some(pr),
        Some(Err(e)) => {
            errors.add(at("protocol"), e);
            return None;
        }
    };
    let source = match (
        &p.allowed_source_address_prefix,
        &p.allowed_source_address_prefixes,
    ) {
        (Some(_), Some(_)) => {
            errors.add(
                at("allowedSourceAddressPrefixes"),
                "Give allowedSourceAddressPrefix or allowedSourceAddressPrefixes, not both.",
            );
            return None;
        }
        (Some(one), None) => Some(one.trim().to_owned()),
        (None, Some(list)) if list.len() == 1 => Some(list[0].trim().to_owned()),
        (None, Some(_)) => {
            errors.add(
                at("allowedSourceAddressPrefixes"),
                "A request opens for one source prefix: give exactly one.",
            );
            return None;
        }
        (None, None) => None,
    };
    let minutes = match (&p.end_time_utc, &p.duration) {
        (Some(_), Some(_)) => {
            errors.add(at("duration"), "Give endTimeUtc or duration, not both.");
            return None;
        }
        (None, None) => {
            errors.add(
                at("endTimeUtc"),
                "Say until when (endTimeUtc, RFC 3339) or for how long (duration, ISO 8601).",
            );
            return None;
        }
        (Some(end), None) => match chrono::DateTime::parse_from_rfc3339(end.trim()) {
            Ok(t) if t.timestamp_millis() <= now_ms => {
                errors.add(at("endTimeUtc"), "The end time must be in the future.");
                return None;
            }
            Ok(t) => Some(((t.timestamp_millis() - now_ms) as f64 / 60_000.0).round() as i64),
            Err(_) => {
                errors.add(
                    at("endTimeUtc"),
                    "Write a time in RFC 3339 form, e.g. 2030-01-31T17:00:00Z.",
                );
                return None;
            }
        },
        (None, Some(d)) => match parse_iso_duration(d) {
            Ok(secs) if secs % 60 != 0 => {
                errors.add(at("duration"), "Give whole minutes, e.g. PT90M.");
                return None;
            }
            Ok(secs) => Some(secs / 60),
            Err(e) => {
                errors.add(at("duration"), e.to_string());
                return None;
            }
        },
    };
    Some(Asked {
        port: port?,
        protocol,
        source,
        minutes,
    })
}

/// Translates an Azure-style initiate body for the given VMs (already found, in body
/// order) into the portal's request form and hands it to the same service. All VMs or
/// none: the service checks every VM before storing anything.
pub async fn initiate_requests(
    state: &AppState,
    actor: &Actor,
    input: &InitiateInput,
    vms: &[StoredVm],
) -> ApiResult<Vec<StoredRequest>> {
    // An end time counts from the start asked for (a wrong start is the service's to
    // report, on startTimeUtc).
    let now = input
        .start_time_utc
        .as_deref()
        .and_then(parse_instant)
        .unwrap_or(0)
        .max(state.store.now_ms());
    let mut errors = ApiErrors::default();
    let mut keys = Vec::new();
    let mut source: Option<(Option<String>, String)> = None;
    let mut minutes: Option<(i64, String)> = None;
    for (i, (vm_in, vm)) in input.virtual_machines.iter().zip(vms).enumerate() {
        if vm_in.ports.is_empty() {
            errors.add(
                format!("virtualMachines[{i}].ports"),
                "Choose at least one port.",
            );
        }
        // A port without a protocol means the policy's only rule for that port.
        let (_, policy) = jit::policy_of(&state.store, actor, &vm.id).await?;
        for (j, p) in vm_in.ports.iter().enumerate() {
            let at = |f: &str| format!("virtualMachines[{i}].ports[{j}].{f}");
            let Some(asked) = read_port(p, &at, now, &mut errors) else {
                continue;
            };
            let protocol = match asked.protocol {
                Some(pr) => pr,
                None => {
                    let rules: Vec<Protocol> = policy
                        .iter()
                        .flat_map(|pol| pol.rules.iter())
                        .filter(|r| r.port == asked.port)
                        .map(|r| r.protocol)
                        .collect();
                    match rules.as_slice() {
                        [one] => *one,
                        [] => Protocol::Tcp,
                        _ => {
                            errors.add(
                                at("protocol"),
                                format!(
                                    "Port {} has rules for several protocols on {}; name one.",
                                    asked.port, vm.name
                                ),
                            );
                            continue;
                        }
                    }
                }
            };
            match &source {
                None => source = Some((asked.source.clone(), at("allowedSourceAddressPrefix"))),
                Some((s, _)) if *s != asked.source => errors.add(
                    at("allowedSourceAddressPrefix"),
                    "All ports of a request open for the same source; send one request per source.",
                ),
                Some(_) => {}
            }
            if let Some(m) = asked.minutes {
                let field = if p.duration.is_some() {
                    at("duration")
                } else {
                    at("endTimeUtc")
                };
                match &minutes {
                    None => minutes = Some((m, field)),
                    Some((first, _)) if *first != m => errors.add(
                        field,
                        "All ports of a request end at the same time; send one request per end time.",
                    ),
                    Some(_) => {}
                }
            }
            keys.push(format!(
                "{}:{}/{}",
                vm.id,
                asked.port.get(),
                protocol.as_str()
            ));
        }
    }
    errors.finish()?;
    let (source, source_field) = source.unwrap_or((None, "allowedSourceAddressPrefix".into()));
    let (minutes, minutes_field) = minutes.unwrap_or((0, "duration".into()));
    let vm_ids: Vec<String> = vms.iter().map(|v| v.id.clone()).collect();
    let minutes_text = minutes.to_string();
    let ids = requests::request_access(
        &state.store,
        actor,
        requests::AccessForm {
            ports: &keys,
            vm_ids: &vm_ids,
            source_mode: if source.is_some() { "custom" } else { "my_ip" },
            custom_source: source.as_deref().unwrap_or(""),
            duration_minutes: &minutes_text,
            justification: &input.justification,
            start: input.start_time_utc.as_deref().unwrap_or(""),
        },
    )
    .await
    .map_err(|e| {
        ApiError::from_app(e, &|f| match f {
            "ports" => "virtualMachines".into(),
            "source" => source_field.clone(),
            "duration" => minutes_field.clone(),
            "start" => "startTimeUtc".into(),
            other => other.into(),
        })
    })?;
    state.expiry_wake.notify_one();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(requests::get(&state.store, actor, &id).await?);
    }
    Ok(out)
}

/// Your requests (default), those waiting for your decision, or those on one VM.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests",
    params(RequestListQuery),
    responses(
        (status = 200, body = RequestList),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn list_requests(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<RequestListQuery>,
) -> ApiResult<Json<RequestList>> {
    let store = &state.store;
    let page = q.page.unwrap_or(1);
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::field("page", "A page number is 1 to 100000."));
    }
    let list = match (q.view.as_deref().unwrap_or("mine"), q.vm.as_deref()) {
        ("mine", None) => requests::my_requests(store, &actor, page).await?,
        ("approvals", None) => requests::approval_queue(store, &actor, page).await?,
        ("vm", Some(vm)) => {
            let vm = jit::find_vm(store, &actor, vm).await?;
            requests::vm_requests_page(store, &actor, &vm.id, page).await?
        }
        ("vm", None) => return Err(ApiError::field("vm", "Name the VM (id or name).")),
        ("mine" | "approvals", Some(_)) => {
            return Err(ApiError::field("vm", "vm goes with view=vm."));
        }
        _ => {
            return Err(ApiError::field("view", "Choose mine, approvals or vm."));
        }
    };
    Ok(Json(RequestList {
        value: list.items.into_iter().map(request_dto).collect(),
        page: Some(page),
        page_size: Some(requests::REQUESTS_PAGE),
        more: Some(list.more),
    }))
}

/// Requests access on one or several VMs at once, all or none. One request per VM, or two
/// where a VM's ports include some that need approval and some that don't: the latter open
/// at once (status `Active`) while the former wait (`PendingApproval`).
#[utoipa::path(post, path = "/api/v1/requests", tag = "requests",
    request_body = InitiateInput,
    responses(
        (status = 202, body = RequestList),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn create_requests(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<InitiateInput>,
) -> ApiResult<(StatusCode, Json<RequestList>)> {
    if input.virtual_machines.is_empty() || input.virtual_machines.len() > 50 {
        return Err(ApiError::field("virtualMachines", "Give 1 to 50 VMs."));
    }
    let mut vms: Vec<StoredVm> = Vec::new();
    for (i, v) in input.virtual_machines.iter().enumerate() {
        let Some(id) = v.id.as_deref() else {
            return Err(ApiError::field(
                format!("virtualMachines[{i}].id"),
                "Name the VM (id or name).",
            ));
        };
        let vm = jit::find_vm(&state.store, &actor, id).await?;
        if vms.iter().any(|seen| seen.id == vm.id) {
            return Err(ApiError::field(
                format!("virtualMachines[{i}].id"),
                "The VM is listed twice; put all its ports in one entry.",
            ));
        }
        check_body_vm(Some(id), &vm, &format!("virtualMachines[{i}].id"))?;
        vms.push(vm);
    }
    let created = initiate_requests(&state, &actor, &input, &vms).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestList {
            value: created.into_iter().map(request_dto).collect(),
            page: None,
            page_size: None,
            more: None,
        }),
    ))
}

/// One request: yours, or on a VM you may see.
#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    responses(
        (status = 200, body = RequestDto),
        (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn get_request(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RequestDto>> {
    Ok(Json(request_dto(
        requests::get(&state.store, &actor, &id).await?,
    )))
}

fn comment_field(f: &str) -> String {
    f.to_owned()
}

/// Approves a pending request (approvers of its VM; never your own).
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Option<DecisionInput>, description = "Optional comment"),
    responses(
        (status = 200, body = RequestDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<DecisionInput>,
) -> ApiResult<Json<RequestDto>> {
    requests::approve(&state.store, &actor, &id, &input.comment)
        .await
        .map_err(|e| ApiError::from_app(e, &comment_field))?;
    state.expiry_wake.notify_one();
    Ok(Json(request_dto(
        requests::get(&state.store, &actor, &id).await?,
    )))
}

/// Denies a pending request (approvers of its VM; never your own).
#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    request_body(content = Option<DecisionInput>, description = "Optional comment"),
    responses(
        (status = 200, body = RequestDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn deny(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(input): OptionalJson<DecisionInput>,
) -> ApiResult<Json<RequestDto>> {
    requests::deny(&state.store, &actor, &id, &input.comment)
        .await
        .map_err(|e| ApiError::from_app(e, &comment_field))?;
    Ok(Json(request_dto(
        requests::get(&state.store, &actor, &id).await?,
    )))
}

/// Ends a request now (its requester, or an admin of its VM). The ports close at once.
#[utoipa::path(post, path = "/api/v1/requests/{id}/revoke", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    responses(
        (status = 200, body = RequestDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RequestDto>> {
    requests::revoke(&state.store, &actor, &id).await?;
    Ok(Json(request_dto(
        requests::get(&state.store, &actor, &id).await?,
    )))
}

/// Sets a request's end to now + `duration`, within the policy's maximum; never shortens.
#[utoipa::path(post, path = "/api/v1/requests/{id}/extend", tag = "requests",
    params(("id" = String, Path, description = "The request's id")),
    request_body = ExtendInput,
    responses(
        (status = 200, body = RequestDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn extend(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<ExtendInput>,
) -> ApiResult<Json<RequestDto>> {
    let minutes = match parse_iso_duration(&input.duration) {
        Ok(secs) if secs % 60 == 0 => secs / 60,
        Ok(_) => {
            return Err(ApiError::field(
                "duration",
                "Give whole minutes, e.g. PT30M.",
            ));
        }
        Err(e) => return Err(ApiError::field("duration", e.to_string())),
    };
    requests::extend(&state.store, &actor, &id, &minutes.to_string()).await?;
    state.expiry_wake.notify_one();
    Ok(Json(request_dto(
        requests::get(&state.store, &actor, &id).await?,
    )))
}
