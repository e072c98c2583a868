//! The Overview page (`/`): what needs each person first, by what they may do.
//!
//! It exists so that the page answers "what needs me?" in one call, with every section
//! decided here rather than in the page or the server function:
//!
//! - approvers: the requests waiting for their decision, read from the approval queue
//!   itself ([`requests::approval_queue`]), so that one path decides what waits for whom;
//! - requesters: their access in force (with its end), their booked windows and their
//!   requests waiting for approval;
//! - administrators (whoever may configure or manage some VMs): silent agents,
//!   enforcement errors and the last day's denials, among the VMs they administer only;
//! - global administrators of a new install: the first steps still to take.
//!
//! Each read is bounded and indexed (see `store::overview`); each row is checked again
//! with [`permits`] before it is shown.

use super::Actor;
use super::jit::SILENT_AFTER_MS;
use super::requests;
use crate::domain::request::RequestStatus;
use crate::domain::{Action, Resource, Visibility, permits, permits_approval, visibility};
use crate::error::AppResult;
use crate::store::{AgentNews, Denial, Store, StoredRequest};

/// How many rows of each list the page shows; more are behind a link.
pub const FIRST_FEW: usize = 5;
/// How many open requests of their own a requester sees on the page.
pub const OWN_OPEN: usize = 30;
/// How far back "recent denials" reach.
pub const DENIALS_SINCE_MS: i64 = 24 * 3600 * 1000;

/// The requests waiting for the viewer's decision.
#[derive(Debug, Clone, Default)]
pub struct Waiting {
    /// The first few, newest first.
    pub first: Vec<StoredRequest>,
    /// How many wait, up to a page of the approval queue ([`requests::REQUESTS_PAGE`]).
    pub count: usize,
    /// More than `count` wait.
    pub more: bool,
}

/// The viewer's own open requests.
#[derive(Debug, Clone, Default)]
pub struct MyAccess {
    /// In force, the soonest ending first.
    pub active: Vec<StoredRequest>,
    /// Approved for a later start, the soonest opening first.
    pub scheduled: Vec<StoredRequest>,
    /// Waiting for approval, newest first.
    pub pending: Vec<StoredRequest>,
    /// The viewer has more open requests than these.
    pub more: bool,
}

/// What needs an administrator among the VMs they administer.
#[derive(Debug, Clone, Default)]
pub struct Trouble {
    /// Enrolled agents not heard from for [`SILENT_AFTER_MS`], longest silent first.
    pub silent: Vec<AgentNews>,
    pub more_silent: bool,
    /// Agents (not silent) that reported an enforcement error.
    pub errors: Vec<AgentNews>,
    pub more_errors: bool,
    /// Requests denied in the last [`DENIALS_SINCE_MS`], newest first.
    pub denials: Vec<Denial>,
    pub more_denials: bool,
}

/// A first step of a new install.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStep {
    /// Add a VM, or enroll an agent that registers its host.
    AddVm,
    /// Put a VM under a JIT policy.
    EnableJit,
    /// Create a second user.
    InviteUsers,
    /// Configure an OpenID Connect provider.
    ConnectSso,
}

impl SetupStep {
    pub fn as_str(self) -> &'static str {
        match self {
            SetupStep::AddVm => "add_vm",
            SetupStep::EnableJit => "enable_jit",
            SetupStep::InviteUsers => "invite_users",
            SetupStep::ConnectSso => "connect_sso",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Overview {
    /// None: the viewer approves nowhere.
    pub waiting: Option<Waiting>,
    /// None: the viewer may request nowhere and has no open request.
    pub access: Option<MyAccess>,
    /// None: the viewer administers no VM.
    pub trouble: Option<Trouble>,
    /// The first steps and whether each is done; empty unless the viewer administers
    /// everything and a step is left.
    pub setup: Vec<(SetupStep, bool)>,
}

fn vm_of(vm_id: &str, group: &str) -> Resource {
    Resource::Vm {
        id: vm_id.to_owned(),
        group: group.to_owned(),
    }
}

fn is_empty(scope: &Visibility) -> bool {
    !scope.everything && scope.groups.is_empty() && scope.vm_ids.is_empty()
}

/// Where the actor administers VMs: where they may configure policies or manage VMs.
fn administered(actor: &Actor) -> Visibility {
    let mut scope = visibility(&actor.roles, Action::ConfigurePolicy);
    let manage = visibility(&actor.roles, Action::ManageVm);
    scope.everything |= manage.everything;
    for g in manage.groups {
        if !scope.groups.contains(&g) {
            scope.groups.push(g);
        }
    }
    for id in manage.vm_ids {
        if !scope.vm_ids.contains(&id) {
            scope.vm_ids.push(id);
        }
    }
    scope
}

fn administers(actor: &Actor, vm: &Resource) -> bool {
    permits(&actor.roles, Action::ConfigurePolicy, vm)
        || permits(&actor.roles, Action::ManageVm, vm)
}

/// The requests waiting for `actor`'s decision, or None when they approve nowhere.
pub async fn waiting_for(store: &Store, actor: &Actor) -> AppResult<Option<Waiting>> {
    if is_empty(&visibility(&actor.roles, Action::ApproveRequest)) {
        return Ok(None);
    }
    let page = requests::approval_queue(store, actor, 1).await?;
    let mine: Vec<StoredRequest> = page
        .items
        .into_iter()
        .filter(|r| {
            permits_approval(
                &actor.roles,
                &vm_of(&r.vm_id, &r.vm_group),
                &actor.user_id,
                &r.requester_id,
            )
        })
        .collect();
    Ok(Some(Waiting {
        count: mine.len(),
        more: page.more,
        first: mine.into_iter().take(FIRST_FEW).collect(),
    }))
}

/// `actor`'s own open requests, or None when they may request nowhere and have none.
pub async fn my_access(store: &Store, actor: &Actor) -> AppResult<Option<MyAccess>> {
    let mut open = store
        .open_requests_of(&actor.user_id, OWN_OPEN as i64 + 1)
        .await?;
    let more = open.len() > OWN_OPEN;
    open.truncate(OWN_OPEN);
    if open.is_empty() && is_empty(&visibility(&actor.roles, Action::RequestAccess)) {
        return Ok(None);
    }
    let mut access = MyAccess {
        more,
        ..Default::default()
    };
    for r in open {
        match r.status {
            RequestStatus::Active => access.active.push(r),
            RequestStatus::Approved => access.scheduled.push(r),
            RequestStatus::PendingApproval => access.pending.push(r),
            _ => {}
        }
    }
    access.active.sort_by_key(|r| r.end_at);
    access.scheduled.sort_by_key(|r| r.planned_start_at);
    Ok(Some(access))
}

/// Agents in trouble and recent denials among the VMs `actor` administers, or None when
/// they administer none.
pub async fn trouble(store: &Store, actor: &Actor) -> AppResult<Option<Trouble>> {
    let scope = administered(actor);
    if is_empty(&scope) {
        return Ok(None);
    }
    let now = store.now_ms();
    let few = FIRST_FEW as i64 + 1;
    let keep = |rows: Vec<AgentNews>| -> (Vec<AgentNews>, bool) {
        let mut rows: Vec<AgentNews> = rows
            .into_iter()
            .filter(|a| administers(actor, &vm_of(&a.vm_id, &a.vm_group)))
            .collect();
        let more = rows.len() > FIRST_FEW;
        rows.truncate(FIRST_FEW);
        (rows, more)
    };
    let (silent, more_silent) = keep(
        store
            .silent_agents(&scope, now - SILENT_AFTER_MS, few)
            .await?,
    );
    let (errors, more_errors) = keep(
        store
            .agent_errors(&scope, now - SILENT_AFTER_MS, few)
            .await?,
    );
    let mut denials: Vec<Denial> = store
        .recent_denials(&scope, now - DENIALS_SINCE_MS, few)
        .await?
        .into_iter()
        .filter(|d| administers(actor, &vm_of(&d.vm_id, &d.vm_group)))
        .collect();
    let more_denials = denials.len() > FIRST_FEW;
    denials.truncate(FIRST_FEW);
    Ok(Some(Trouble {
        silent,
        more_silent,
        errors,
        more_errors,
        denials,
        more_denials,
    }))
}

/// The first steps of a new install and whether each is done, for whoever administers
/// everything; empty for anyone else, and once every step is done.
pub async fn setup(
    store: &Store,
    actor: &Actor,
    sso_configured: bool,
) -> AppResult<Vec<(SetupStep, bool)>> {
    let global = permits(&actor.roles, Action::ManageVm, &Resource::Global)
        && permits(&actor.roles, Action::ManageUsers, &Resource::Global);
    if !global {
        return Ok(Vec::new());
    }
    let progress = store.setup_progress().await?;
    let steps = vec![
        (SetupStep::AddVm, progress.has_vm),
        (SetupStep::EnableJit, progress.has_policy),
        (SetupStep::InviteUsers, progress.several_users),
        (SetupStep::ConnectSso, sso_configured),
    ];
    if steps.iter().all(|(_, done)| *done) {
        return Ok(Vec::new());
    }
    Ok(steps)
}

/// Every section of the page for `actor`. `sso_configured`: an OpenID Connect provider
/// is configured (that is configuration, not data).
pub async fn overview(store: &Store, actor: &Actor, sso_configured: bool) -> AppResult<Overview> {
    Ok(Overview {
        waiting: waiting_for(store, actor).await?,
        access: my_access(store, actor).await?,
        trouble: trouble(store, actor).await?,
        setup: setup(store, actor, sso_configured).await?,
    })
}
