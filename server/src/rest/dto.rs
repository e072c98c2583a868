//! The JSON shapes of the REST API. Field names follow Azure's jitNetworkAccessPolicies
//! (camelCase, `virtualMachines[].ports[]`, ISO 8601 durations, RFC 3339 times) so that
//! scripts written for Azure need little change. Every input refuses unknown fields: a
//! misspelt field is an error, not a silently ignored setting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `validation`, `unauthenticated`, `forbidden`, `not_found`, `conflict`,
    /// `bad_request`, `payload_too_large`, `unsupported_media_type`, `internal`, …
    pub code: String,
    pub message: String,
    /// Per JSON field (e.g. `virtualMachines[0].ports[1].number`), what is wrong with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

// ---- account ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RoleDto {
    /// `reader`, `requester`, `approver` or `admin`.
    pub role: String,
    /// `all`, `group` or `vm`.
    pub scope: String,
    /// The group name or VM id of the scope; empty for `all`.
    pub target: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeDto {
    pub user_id: String,
    pub username: String,
    pub roles: Vec<RoleDto>,
    /// The address the server sees you at: what a request without a source opens for.
    pub client_ip: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenDto {
    pub id: String,
    pub name: String,
    /// The first characters of the token, to recognise it; never the secret.
    pub prefix: String,
    pub created_utc: String,
    pub expires_utc: String,
    pub last_used_utc: Option<String>,
    pub revoked_utc: Option<String>,
    /// The owner's user name: only in the list of every user's tokens (`?all=true`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenListQuery {
    /// `true`: every user's tokens in force, with their owner (administrators over
    /// everything only). Otherwise your own tokens, in force or not.
    pub all: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenList {
    pub value: Vec<TokenDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenInput {
    /// A label to recognise the token by (1 to 64 characters).
    pub name: String,
    /// Days until it expires: 1 to 365, default 30. A token created with a token never
    /// outlives the token that created it.
    pub expires_in_days: Option<i64>,
    /// The user the token is for; default yourself. Another user's token needs the admin
    /// role over everything.
    pub user: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTokenDto {
    /// The token itself: shown this once, never again.
    pub token: String,
    /// The user it acts as.
    pub owner: String,
    pub info: TokenDto,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentTokenDto {
    /// The one-time token (valid one hour): shown this once.
    pub token: String,
    /// The line to run, as root, on the host to protect.
    pub command: String,
    /// Why the command is unsafe as it stands (plain http beyond this host); absent when
    /// it is not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub warning: Option<String>,
    /// The VM's id, for a token of an existing VM.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vm_id: Option<String>,
    /// The VM's name, or `new VM in GROUP`.
    pub target: String,
    pub group: String,
    pub expires_utc: String,
}

// ---- VMs ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantDto {
    pub number: i64,
    /// `TCP`, `UDP` or `*`.
    pub protocol: String,
    pub allowed_source_address_prefix: String,
    pub end_time_utc: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmDto {
    pub id: String,
    pub name: String,
    /// The group (like an Azure resource group) that role scopes refer to.
    pub group: String,
    /// `linux`, `windows` or `other`.
    pub os: String,
    pub addresses: Vec<String>,
    /// Management ports known to be listening and reachable.
    pub exposed_ports: Vec<i64>,
    pub jit_policy_configured: bool,
    /// Enforcement by the VM's agent, in words.
    pub agent_status: String,
    pub approved_requests_last_7_days: i64,
    pub last_access_utc: Option<String>,
    pub last_user: Option<String>,
    pub active_grants: Vec<GrantDto>,
    /// When the VM's agent last reached the server; absent when no agent has yet.
    #[serde(default)]
    pub agent_last_contact_utc: Option<String>,
    /// The generation of the desired state the agent last reported applied (0: none).
    #[serde(default)]
    pub agent_applied_generation: i64,
    /// The generation of the VM's desired state now; the agent is up to date when it
    /// equals `agentAppliedGeneration`.
    #[serde(default)]
    pub desired_generation: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmList {
    pub value: Vec<VmDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmInput {
    /// Letters, digits and `- _ .`, at most 64 characters; unique.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Letters, digits and `- _ .`, at most 64 characters.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub group: String,
    #[serde(default)]
    #[schema(max_items = 16)]
    pub addresses: Vec<String>,
    /// `linux`, `windows` or `other` (default).
    #[serde(default)]
    pub os: String,
    /// Among 22, 3389, 5985, 5986.
    #[serde(default)]
    pub exposed_ports: Vec<i64>,
}

/// Many VMs at once: a CSV file's text or JSON rows (exactly one of the two).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmImportInput {
    /// CSV text: a header row naming the columns `name`, `group` (required),
    /// `addresses`, `os`, `exposed_ports` (optional), then one VM per line, at most 5000.
    /// Several addresses or ports in one cell are separated by spaces, semicolons or,
    /// in a quoted cell, commas.
    pub csv: Option<String>,
    /// The VMs as JSON, each as `POST /api/v1/vms` takes one; at most 5000.
    #[schema(max_items = 5000)]
    pub rows: Option<Vec<VmInput>>,
    /// Only check and show what would be added; nothing is stored.
    #[serde(default)]
    pub dry_run: bool,
}

/// One VM of an import, as it parsed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmImportRow {
    /// The CSV line (the header is line 1), or the 1-based position in `rows`.
    pub line: usize,
    pub name: String,
    pub group: String,
    pub addresses: Vec<String>,
    pub os: String,
    pub exposed_ports: Vec<i64>,
    /// The new VM's id; absent in a dry run.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmImportResult {
    pub dry_run: bool,
    /// How many VMs were added: 0 in a dry run.
    pub imported: usize,
    pub rows: Vec<VmImportRow>,
}

/// What is wrong with one line of an import.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VmImportRowError {
    /// The CSV line (the header is line 1), or the 1-based position in `rows`.
    pub line: usize,
    /// `name`, `group`, `addresses`, `os` or `exposed_ports`; empty for the whole line.
    pub column: String,
    pub message: String,
}

/// An import refused (422): nothing was stored. `fields` names each problem as
/// `line N, column`; `rows` lists them in line order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VmImportErrorBody {
    pub error: VmImportErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VmImportErrorDetail {
    /// `validation`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
    pub rows: Vec<VmImportRowError>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VmListQuery {
    /// `all` (default), `configured`, `recommended`, `notConfigured` or `unsupported` (no
    /// policy, and the agent reports that it cannot enforce one).
    pub tab: Option<String>,
    /// Text anywhere in a VM's name or resource group, ASCII letters in any case: at most
    /// 100 characters, none of them a control character.
    pub search: Option<String>,
    /// `name` (default), `group` or `os`.
    pub sort: Option<String>,
    pub desc: Option<bool>,
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<i64>,
}

// ---- JIT policies ----

/// One port rule of a JIT policy, as in Azure's `JitNetworkAccessPortRule`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPortInput {
    #[schema(minimum = 1, maximum = 65535)]
    pub number: i64,
    /// `TCP`, `UDP` or `*` (any).
    pub protocol: String,
    /// `*` (the requester names the source) or one IPv4/IPv6 CIDR.
    pub allowed_source_address_prefix: Option<String>,
    /// Several IPv4/IPv6 CIDRs; instead of `allowedSourceAddressPrefix`.
    #[schema(max_items = 50)]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    /// ISO 8601, whole minutes, 5 minutes to 24 hours; default `PT3H`.
    pub max_request_access_duration: Option<String>,
    /// Portcullis extension: requests must say why.
    #[serde(default)]
    pub justification_required: bool,
    /// Portcullis extension: requests wait for an approver.
    #[serde(default)]
    pub approval_required: bool,
    /// Portcullis extension: ISO 8601, whole minutes, 5 minutes to 24 hours; a request
    /// not approved within it is closed. Default `PT1H`.
    pub approval_timeout: Option<String>,
    /// Portcullis extension: how many distinct approvers must approve (1–5, default 1;
    /// more than one needs `approvalRequired`). Any one denial ends the request.
    #[schema(minimum = 1, maximum = 5)]
    pub approvals_required: Option<i64>,
    /// Portcullis extension: how far ahead a request may start, ISO 8601 in whole days
    /// from `P0D` (only now) to `P30D`; default `P7D`.
    pub max_schedule_ahead: Option<String>,
    /// Portcullis extension: for `allowedSourceAddressPrefix` `*`, the widest IPv4 source a
    /// request may name (prefix length 1–32, default 24).
    #[schema(minimum = 1, maximum = 32)]
    pub widest_source_prefix_ipv4: Option<i64>,
    /// Portcullis extension: the same for IPv6 (1–128, default 64).
    #[schema(minimum = 1, maximum = 128)]
    pub widest_source_prefix_ipv6: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyVmInput {
    /// The VM's id or name; optional, but when given it must name the VM in the path.
    pub id: Option<String>,
    #[schema(min_items = 1, max_items = 100)]
    pub ports: Vec<PolicyPortInput>,
}

/// A JIT policy to create or replace: exactly one VM, the one in the path.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInput {
    #[schema(min_items = 1, max_items = 1)]
    pub virtual_machines: Vec<PolicyVmInput>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyPortDto {
    pub number: i64,
    pub protocol: String,
    /// `*` when the requester names the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
    pub max_request_access_duration: String,
    pub justification_required: bool,
    pub approval_required: bool,
    /// How long a request may wait for approval (ISO 8601).
    pub approval_timeout: String,
    /// How many distinct approvers must approve (1–5).
    pub approvals_required: i64,
    /// How far ahead a request may start (ISO 8601, whole days).
    pub max_schedule_ahead: String,
    pub widest_source_prefix_ipv4: i64,
    pub widest_source_prefix_ipv6: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyVmDto {
    pub id: String,
    pub name: String,
    pub ports: Vec<PolicyPortDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyDto {
    /// The VM's id: a policy belongs to one VM.
    pub id: String,
    /// The VM's name.
    pub name: String,
    pub kind: String,
    pub provisioning_state: String,
    pub virtual_machines: Vec<PolicyVmDto>,
    /// Portcullis extension, in the answer to a create or replace: what the VM's previous
    /// policy lost or gained, one line per rule (empty when nothing changed or there was
    /// no policy before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyList {
    pub value: Vec<PolicyDto>,
    pub total: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<i64>,
}

// ---- access requests ----

/// One requested port, as in Azure's `JitNetworkAccessRequestPort`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiatePortInput {
    #[schema(minimum = 1, maximum = 65535)]
    pub number: i64,
    /// `TCP`, `UDP` or `*`; may be left out when the policy has one rule for the port.
    pub protocol: Option<String>,
    /// When access ends (RFC 3339, UTC); rounded to the minute. Or give `duration`.
    pub end_time_utc: Option<String>,
    /// Portcullis extension: how long, ISO 8601 in whole minutes (e.g. `PT1H`).
    pub duration: Option<String>,
    /// The source to open for (an address or CIDR); default: the caller's address.
    pub allowed_source_address_prefix: Option<String>,
    /// Accepted for Azure compatibility; must hold exactly one prefix.
    #[schema(max_items = 1)]
    pub allowed_source_address_prefixes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateVmInput {
    /// The VM's id or name (on `/jitPolicies/{vm}/initiate` optional; must match the path).
    pub id: Option<String>,
    #[schema(min_items = 1, max_items = 100)]
    pub ports: Vec<InitiatePortInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitiateInput {
    #[schema(min_items = 1, max_items = 50)]
    pub virtual_machines: Vec<InitiateVmInput>,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub justification: String,
    /// Portcullis extension: a later start (RFC 3339, or `2026-12-01T09:00` read as UTC), within the ports' rules' lead time
    /// (7 days unless the policy says otherwise). The request is decided ahead and opens
    /// at this time; `endTimeUtc` and `duration` then count from it. Default: now.
    pub start_time_utc: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestPortDto {
    pub number: i64,
    pub protocol: String,
    pub allowed_source_address_prefix: String,
    pub end_time_utc: Option<String>,
    /// `Pending`, `Initiated` (granted, not yet applied by the VM's agent), `Active`
    /// (applied), `Expired`, `Revoked`, `Denied`, `Superseded` or `Failed`.
    pub status: String,
    pub status_reason: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RequestVmDto {
    pub id: String,
    pub name: String,
    pub ports: Vec<RequestPortDto>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestDto {
    pub id: String,
    /// `PendingApproval`, `Approved`, `Active`, `Expired`, `Denied`, `Revoked` or `Failed`.
    pub status: String,
    pub requestor: String,
    pub justification: String,
    /// ISO 8601.
    pub duration: String,
    pub created_utc: String,
    /// When it opened, or the later start it asked for while it waits for it.
    pub start_time_utc: Option<String>,
    /// When it ends or ended, or the end of the window it asked for while it waits.
    pub end_time_utc: Option<String>,
    pub decided_by: Option<String>,
    pub decision_comment: String,
    pub virtual_machines: Vec<RequestVmDto>,
    /// Portcullis extension: distinct approvals given so far, and how many the request
    /// needs (it stays `PendingApproval` until they are reached).
    #[serde(default)]
    pub approvals: i64,
    #[serde(default)]
    pub approvals_required: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestList {
    pub value: Vec<RequestDto>,
    /// For a listing: the page (50 requests), and whether another follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RequestListQuery {
    /// `mine` (default: your requests), `approvals` (waiting for your decision) or `vm`
    /// (the requests on the VM named by `vm`).
    pub view: Option<String>,
    /// A VM id or name, with `view=vm`.
    pub vm: Option<String>,
    /// 50 requests a page, newest first.
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<i64>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionInput {
    #[serde(default)]
    #[schema(max_length = 500)]
    pub comment: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtendInput {
    /// From now, ISO 8601 in whole minutes, within the policy's maximum (e.g. `PT30M`).
    pub duration: String,
}

// ---- activity log ----

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntryDto {
    pub seq: i64,
    pub time_utc: String,
    pub actor: String,
    pub client_ip: String,
    pub action: String,
    pub vm: String,
    pub ports: String,
    pub source: String,
    pub justification: String,
    pub result: String,
    pub detail: String,
    /// SHA-256 over the previous entry's hash and this entry.
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainDto {
    pub verified: bool,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPageDto {
    pub value: Vec<LogEntryDto>,
    pub total: i64,
    pub page: i64,
    pub page_size: i64,
    pub chain: ChainDto,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQueryParams {
    /// Entries whose VM name starts with this (case ignored for ASCII letters; `%` and `_`
    /// are plain characters); in double quotes (`"web-1"`), that name only (case ignored). Until
    /// 2026-11 this matched the whole name only. At most 100 characters.
    pub vm: Option<String>,
    /// Entries whose user name starts with this (case ignored for ASCII letters; `%` and
    /// `_` are plain characters); in double quotes (`"alice"`), that name only (case ignored). Until
    /// 2026-11 this matched the whole name only. At most 100 characters.
    pub actor: Option<String>,
    /// Exactly this action, e.g. `request`, `deny`, `revoke`, `policy.update`,
    /// `token.create`: lower-case letters, digits, `.`, `-` and `_`.
    pub action: Option<String>,
    /// UTC, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`.
    pub from: Option<String>,
    /// UTC, `YYYY-MM-DD` (inclusive) or `YYYY-MM-DDTHH:MM`.
    pub to: Option<String>,
    #[param(minimum = 1, maximum = 100000)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv` (default) or `json`.
    pub format: Option<String>,
    /// VM name prefix (in double quotes: the exact name), as for `GET /api/v1/activity`.
    pub vm: Option<String>,
    /// User name prefix (in double quotes: the exact name), as for `GET /api/v1/activity`.
    pub actor: Option<String>,
    /// Exactly this action, as for `GET /api/v1/activity`.
    pub action: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}
