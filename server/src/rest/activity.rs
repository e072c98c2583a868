//! The activity log: filtered pages with the chain's verification, and exports.

use super::dto::{ChainDto, ExportParams, LogEntryDto, LogPageDto, LogQueryParams};
use super::vms::paging;
use super::{ApiError, ApiQuery, ApiResult, Caller, utc};
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_app::api::jit::parse_log_filter;
use portcullis_app::services::activity;
use portcullis_app::state::AppState;
use portcullis_app::store::LogEntry;

fn entry_dto(e: LogEntry) -> LogEntryDto {
    let c = e.content;
    LogEntryDto {
        seq: c.seq,
        time_utc: utc(c.at),
        actor: c.actor,
        client_ip: c.client_ip,
        action: c.action,
        vm: c.vm,
        ports: c.ports,
        source: c.source,
        justification: c.justification,
        result: c.result,
        detail: c.detail,
        hash: e.hash,
    }
}

fn filter(
    vm: &Option<String>,
    actor: &Option<String>,
    action: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> ApiResult<portcullis_app::store::LogQuery> {
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    parse_log_filter(&s(vm), &s(actor), &s(action), &s(from), &s(to), "").map_err(ApiError::from)
}

/// Activity log entries, newest first, and whether the hash chain verifies.
#[utoipa::path(get, path = "/api/v1/activity", tag = "activity",
    params(LogQueryParams),
    responses(
        (status = 200, body = LogPageDto),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn query(
    State(state): State<AppState>,
    Caller(me): Caller,
    ApiQuery(p): ApiQuery<LogQueryParams>,
) -> ApiResult<Json<LogPageDto>> {
    let (page, page_size) = paging(p.page, p.page_size)?;
    let mut q = filter(&p.vm, &p.actor, &p.action, &p.from, &p.to)?;
    q.offset = (page - 1) * page_size;
    q.limit = page_size;
    let (entries, total, status) = activity::page(&state.store, &me, &q).await?;
    let chain = ChainDto {
        verified: status.ok,
        message: status.message,
    };
    Ok(Json(LogPageDto {
        value: entries.into_iter().map(entry_dto).collect(),
        total,
        page,
        page_size,
        chain,
    }))
}

/// Every matching entry, newest first, as CSV (formula-safe, like the portal's download)
/// or a JSON array, streamed in batches.
#[utoipa::path(get, path = "/api/v1/activity/export", tag = "activity",
    params(ExportParams),
    responses(
        (status = 200, description = "CSV (text/csv) or a JSON array of entries",
            content(
                (String = "text/csv"),
                (Vec<LogEntryDto> = "application/json"),
            )),
        (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    Caller(me): Caller,
    ApiQuery(p): ApiQuery<ExportParams>,
) -> ApiResult<Response> {
    use futures::StreamExt;
    let q = filter(&p.vm, &p.actor, &p.action, &p.from, &p.to)?;
    match p.format.as_deref().unwrap_or("csv") {
        "csv" => {
            let chunks = activity::csv_stream(&state.store, &me, q).await?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                    (
                        header::CONTENT_DISPOSITION,
                        "attachment; filename=\"portcullis-activity.csv\"",
                    ),
                ],
                axum::body::Body::from_stream(chunks),
            )
                .into_response())
        }
        "json" => {
            // A JSON array, written a batch at a time: "[", entries separated by commas, "]".
            let batches = activity::export_batches(&state.store, &me, q).await?;
            let mut first = true;
            let body = futures::stream::once(async {
                Ok::<_, portcullis_app::store::StoreError>("[".to_owned())
            })
            .chain(batches.map(move |b| {
                b.map(|entries| {
                    let mut out = String::new();
                    for e in entries {
                        if !std::mem::take(&mut first) {
                            out.push(',');
                        }
                        out.push_str(&serde_json::to_string(&entry_dto(e)).unwrap_or_default());
                    }
                    out
                })
            }))
            .chain(futures::stream::once(async { Ok("]".to_owned()) }));
            Ok((
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(body),
            )
                .into_response())
        }
        _ => Err(ApiError::field("format", "Choose csv or json.")),
    }
}
