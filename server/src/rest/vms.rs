//! VMs: list, read, add, change, remove. The same checks as the portal's VM pages.

use super::dto::{
    EnrollmentTokenDto, GrantDto, VmDto, VmImportErrorBody, VmImportErrorDetail, VmImportInput,
    VmImportResult, VmImportRow, VmImportRowError, VmInput, VmList, VmListQuery,
};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Caller, utc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_app::domain::vm::VmSpec;
use portcullis_app::domain::vm_import::{ImportFile, RawVm, parse_csv};
use portcullis_app::services::enrollment::{self, EnrollTarget, Enrollment};
use portcullis_app::services::jit;
use portcullis_app::state::AppState;
use portcullis_app::store::{VmSummary, VmTab};

pub fn protocol_label(p: &str) -> String {
    match p {
        "tcp" => "TCP".into(),
        "udp" => "UDP".into(),
        "any" => "*".into(),
        other => other.to_owned(),
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

pub fn vm_dto(s: VmSummary) -> VmDto {
    // Read from the list query's own row: no further query per VM.
    let agent_last_contact_utc = s.vm.agent_last_seen.map(utc);
    let agent_applied_generation = s.vm.agent_applied_generation;
    let desired_generation = s.vm.generation;
    let row = portcullis_app::api::jit::views::vm_row(s);
    VmDto {
        addresses: split_list(&row.addresses).map(str::to_owned).collect(),
        exposed_ports: split_list(&row.exposed_ports)
            .filter_map(|p| p.parse().ok())
            .collect(),
        id: row.id,
        name: row.name,
        group: row.group,
        os: row.os,
        jit_policy_configured: row.has_policy,
        agent_status: row.agent_status,
        approved_requests_last_7_days: row.approved_last_7d,
        last_access_utc: row.last_access_at.map(utc),
        last_user: row.last_user,
        active_grants: row
            .grants
            .into_iter()
            .map(|g| GrantDto {
                number: g.port,
                protocol: protocol_label(&g.protocol),
                allowed_source_address_prefix: g.source,
                end_time_utc: utc(g.end_at),
            })
            .collect(),
        agent_last_contact_utc,
        agent_applied_generation,
        desired_generation,
    }
}

/// Page and page size from query parameters, checked.
pub fn paging(page: Option<i64>, size: Option<i64>) -> ApiResult<(i64, i64)> {
    let page = page.unwrap_or(1);
    let size = size.unwrap_or(100);
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::field("page", "A page number is 1 to 100000."));
    }
    if !(1..=500).contains(&size) {
        return Err(ApiError::field("pageSize", "A page has 1 to 500 entries."));
    }
    Ok((page, size))
}

fn spec(input: &VmInput) -> ApiResult<VmSpec> {
    let ports = input
        .exposed_ports
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    if input.addresses.len() > 16 {
        return Err(ApiError::field("addresses", "At most 16 addresses."));
    }
    VmSpec::parse(
        &input.name,
        &input.group,
        &input.addresses.join(","),
        &input.os,
        &ports,
    )
    .map_err(|e| {
        ApiError::from_app(e.into(), &|f| match f {
            "exposed_ports" => "exposedPorts".into(),
            other => other.into(),
        })
    })
}

/// The VMs you may see, a page at a time.
#[utoipa::path(get, path = "/api/v1/vms", tag = "vms",
    params(VmListQuery),
    responses(
        (status = 200, body = VmList),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn list_vms(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiQuery(q): ApiQuery<VmListQuery>,
) -> ApiResult<Json<VmList>> {
    let (page, page_size) = paging(q.page, q.page_size)?;
    let tab = match q.tab.as_deref().unwrap_or("all") {
        "all" => VmTab::All,
        "configured" => VmTab::Configured,
        "recommended" => VmTab::Recommended,
        "notConfigured" | "not_configured" => VmTab::NotConfigured,
        "unsupported" => VmTab::Unsupported,
        _ => {
            return Err(ApiError::field(
                "tab",
                "Choose all, configured, recommended, notConfigured or unsupported.",
            ));
        }
    };
    let search = portcullis_app::domain::vm::parse_search(&q.search.unwrap_or_default())
        .map_err(|m| ApiError::field("search", m))?;
    let sort = q.sort.unwrap_or_else(|| "name".into());
    if !matches!(sort.as_str(), "name" | "group" | "os") {
        return Err(ApiError::field("sort", "Sort by name, group or os."));
    }
    let query = portcullis_app::store::VmListQuery {
        tab,
        search,
        sort,
        desc: q.desc.unwrap_or(false),
        offset: (page - 1) * page_size,
        limit: page_size,
        scope: Default::default(),
        only_id: None,
    };
    let (rows, counts) = jit::list_vms(&state.store, &actor, query).await?;
    Ok(Json(VmList {
        value: rows.into_iter().map(vm_dto).collect(),
        total: counts.of(tab),
        page,
        page_size,
    }))
}

/// One VM, by id or name.
#[utoipa::path(get, path = "/api/v1/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "The VM's id or name")),
    responses(
        (status = 200, body = VmDto),
        (status = 401, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn get_vm(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
) -> ApiResult<Json<VmDto>> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    let summary = jit::vm_summary(&state.store, &actor, &vm.id).await?;
    Ok(Json(vm_dto(summary)))
}

/// Adds a VM (admins of everything or of its group).
#[utoipa::path(post, path = "/api/v1/vms", tag = "vms",
    request_body = VmInput,
    responses(
        (status = 201, body = VmDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn create_vm(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<VmInput>,
) -> ApiResult<(StatusCode, Json<VmDto>)> {
    let spec = spec(&input)?;
    let id = jit::create_vm(&state.store, &actor, spec).await?;
    let summary = jit::vm_summary(&state.store, &actor, &id).await?;
    Ok((StatusCode::CREATED, Json(vm_dto(summary))))
}

/// An import's answer when it stores nothing: an API error, or the rows' errors (422).
pub enum ImportRefusal {
    Api(ApiError),
    Rows(VmImportErrorBody),
}

impl From<ApiError> for ImportRefusal {
    fn from(e: ApiError) -> Self {
        ImportRefusal::Api(e)
    }
}

impl From<portcullis_app::error::AppError> for ImportRefusal {
    fn from(e: portcullis_app::error::AppError) -> Self {
        ImportRefusal::Api(e.into())
    }
}

impl IntoResponse for ImportRefusal {
    fn into_response(self) -> Response {
        match self {
            ImportRefusal::Api(e) => e.into_response(),
            ImportRefusal::Rows(body) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
            }
        }
    }
}

fn row_errors(file: &ImportFile, json_rows: bool) -> VmImportErrorBody {
    let column = |c: &str| match (c, json_rows) {
        ("exposed_ports", true) => "exposedPorts".to_owned(),
        (other, _) => other.to_owned(),
    };
    let errors = file.errors();
    let mut fields = std::collections::BTreeMap::<String, String>::new();
    for e in &errors {
        let key = if e.column.is_empty() {
            format!("line {}", e.line)
        } else {
            format!("line {}, {}", e.line, column(&e.column))
        };
        fields
            .entry(key)
            .and_modify(|m| {
                m.push(' ');
                m.push_str(&e.message);
            })
            .or_insert_with(|| e.message.clone());
    }
    let n = errors.len();
    VmImportErrorBody {
        error: VmImportErrorDetail {
            code: "validation".into(),
            message: format!(
                "Nothing was imported: {n} problem{} in the file.",
                if n == 1 { "" } else { "s" }
            ),
            fields,
            rows: errors
                .into_iter()
                .map(|e| VmImportRowError {
                    line: e.line,
                    column: column(&e.column),
                    message: e.message,
                })
                .collect(),
        },
    }
}

/// Adds many VMs at once, from CSV text or JSON rows: all of them, in one transaction
/// with an activity log entry each, or none. Every problem (a bad cell, a name given
/// twice or already taken, a group you may not add to) is answered at once, by line and
/// column, with 422. With `dryRun` nothing is stored: the answer is what would be added.
#[utoipa::path(post, path = "/api/v1/vms/import", tag = "vms",
    request_body = VmImportInput,
    responses(
        (status = 200, description = "Dry run: every row is sound", body = VmImportResult),
        (status = 201, description = "Every row was added", body = VmImportResult),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, description = "Nothing was stored: the problems by line and column", body = VmImportErrorBody),
    ))]
pub async fn import_vms(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiJson(input): ApiJson<VmImportInput>,
) -> Result<(StatusCode, Json<VmImportResult>), ImportRefusal> {
    let (file, json_rows) = match (input.csv, input.rows) {
        (Some(csv), None) => (parse_csv(&csv), false),
        (None, Some(rows)) => {
            let raw = rows
                .into_iter()
                .map(|r| RawVm {
                    name: r.name,
                    group: r.group,
                    addresses: r.addresses.join(" "),
                    os: r.os,
                    exposed_ports: r
                        .exposed_ports
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                })
                .collect();
            (ImportFile::from_rows(raw), true)
        }
        _ => {
            return Err(ApiError::field("csv", "Give either csv or rows.").into());
        }
    };
    let out = jit::import_vms(&state.store, &actor, file, input.dry_run).await?;
    if !out.file.is_ok() {
        return Err(ImportRefusal::Rows(row_errors(&out.file, json_rows)));
    }
    let mut ids = out.added.iter();
    let rows = out
        .file
        .rows
        .iter()
        .filter_map(|r| r.spec.as_ref().map(|spec| (r.line, spec)))
        .map(|(line, spec)| VmImportRow {
            line,
            name: spec.name.clone(),
            group: spec.group.clone(),
            addresses: spec.addresses.iter().map(ToString::to_string).collect(),
            os: spec.os.as_str().to_owned(),
            exposed_ports: spec
                .exposed_ports
                .iter()
                .map(|p| i64::from(p.get()))
                .collect(),
            id: ids.next().cloned(),
        })
        .collect();
    let status = if input.dry_run {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(VmImportResult {
            dry_run: input.dry_run,
            imported: out.added.len(),
            rows,
        }),
    ))
}

/// Replaces a VM's fields.
#[utoipa::path(put, path = "/api/v1/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "The VM's id or name")),
    request_body = VmInput,
    responses(
        (status = 200, body = VmDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 413, body = super::ErrorBody),
        (status = 415, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn update_vm(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
    ApiJson(input): ApiJson<VmInput>,
) -> ApiResult<Json<VmDto>> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    let spec = spec(&input)?;
    jit::update_vm(&state.store, &actor, &vm.id, spec).await?;
    let summary = jit::vm_summary(&state.store, &actor, &vm.id).await?;
    Ok(Json(vm_dto(summary)))
}

fn enrollment_dto(e: Enrollment) -> EnrollmentTokenDto {
    EnrollmentTokenDto {
        token: e.token,
        command: e.command,
        warning: (!e.warning.is_empty()).then_some(e.warning),
        vm_id: e.vm_id,
        target: e.target,
        group: e.group,
        expires_utc: utc(e.expires_at),
    }
}

/// The address agents reach this portal at, as the portal's VM page shows it.
fn server_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    enrollment::server_url(state.public_url.as_deref(), host)
}

/// A one-time enrollment token (valid one hour) for the agent of this VM, with the
/// command to run on it; for whoever may manage the VM, as on its page in the portal.
#[utoipa::path(post, path = "/api/v1/vms/{vm}/enrollmentTokens", tag = "vms",
    params(("vm" = String, Path, description = "The VM's id or name")),
    responses(
        (status = 201, body = EnrollmentTokenDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn vm_enrollment_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<EnrollmentTokenDto>)> {
    let server = server_url(&state, &headers);
    let made = enrollment::create(&state.store, &actor, EnrollTarget::Vm(&vm), &server).await?;
    Ok((StatusCode::CREATED, Json(enrollment_dto(made))))
}

/// A one-time enrollment token (valid one hour) for an agent that registers its host as
/// a new VM in this group, named after the host; for admins of everything or the group.
#[utoipa::path(post, path = "/api/v1/groups/{group}/enrollmentTokens", tag = "vms",
    params(("group" = String, Path, description = "The group the new VM joins")),
    responses(
        (status = 201, body = EnrollmentTokenDto),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn group_enrollment_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(group): ApiPath<String>,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, Json<EnrollmentTokenDto>)> {
    let server = server_url(&state, &headers);
    let made =
        enrollment::create(&state.store, &actor, EnrollTarget::Group(&group), &server).await?;
    Ok((StatusCode::CREATED, Json(enrollment_dto(made))))
}

/// Removes a VM with its policy and requests.
#[utoipa::path(delete, path = "/api/v1/vms/{vm}", tag = "vms",
    params(("vm" = String, Path, description = "The VM's id or name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
    ))]
pub async fn delete_vm(
    State(state): State<AppState>,
    Caller(actor): Caller,
    ApiPath(vm): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let vm = jit::find_vm(&state.store, &actor, &vm).await?;
    jit::delete_vm(&state.store, &actor, &vm.id).await?;
    state.expiry_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
