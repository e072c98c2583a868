//! Building blocks shared by pages: the portal layout, form fields that show their own
//! validation message, and alerts.

use crate::api::Logout;
use crate::error::AppError;
use leptos::prelude::*;

/// The signed-in user, loaded once per page and shared by the header and the pages.
pub type UserResource = Resource<Result<Option<crate::model::UserView>, crate::error::AppError>>;

/// The names of table columns. Each heads its column (`<th>`) and labels each of its
/// cells (`<td data-label=…>`): on a phone a table's rows become cards, its head is
/// hidden, and CSS shows every cell's `data-label` before its value, so a value is never
/// without its column's name. One constant for both keeps the two from drifting apart.
pub mod col {
    pub const ACTION: &str = "Action";
    pub const ACTIONS: &str = "Actions";
    pub const ACTIVE_GRANTS: &str = "Active grants";
    pub const ACTOR: &str = "Actor";
    pub const ADDRESSES: &str = "Addresses";
    pub const ALLOWED_SOURCE_IPS: &str = "Allowed source IPs";
    pub const ALLOWED_SOURCES: &str = "Allowed sources";
    pub const APPROVAL: &str = "Approval";
    pub const APPROVAL_REQUIRED: &str = "Approval required";
    pub const APPROVAL_WITHIN: &str = "Approval within (minutes)";
    pub const APPROVALS: &str = "Approvals";
    pub const APPROVED_7_DAYS: &str = "Approved (7 days)";
    pub const APPROVERS: &str = "Approvers";
    pub const ASKED: &str = "Asked";
    pub const ATTEMPTS: &str = "Attempts";
    pub const BY: &str = "By";
    pub const CHANNEL: &str = "Channel";
    pub const CREATED: &str = "Created";
    pub const DECISION: &str = "Decision";
    pub const DETAILS: &str = "Details";
    pub const DURATION: &str = "Duration";
    pub const ENABLED: &str = "Enabled";
    pub const ENDS: &str = "Ends";
    pub const ENFORCEMENT: &str = "Enforcement";
    pub const EVENT: &str = "Event";
    pub const EXPIRES: &str = "Expires";
    pub const EXPOSED_MANAGEMENT_PORTS: &str = "Exposed management ports";
    pub const EXPOSED_PORTS: &str = "Exposed ports";
    pub const GROUP: &str = "Group";
    pub const JUSTIFICATION: &str = "Justification";
    pub const JUSTIFICATION_REQUIRED: &str = "Justification required";
    pub const KIND: &str = "Kind";
    pub const LAST_ACCESS: &str = "Last access";
    pub const LAST_ATTEMPT: &str = "Last attempt";
    pub const LAST_DELIVERY: &str = "Last delivery";
    pub const LAST_ERROR: &str = "Last error";
    pub const LAST_USED: &str = "Last used";
    pub const LAST_USER: &str = "Last user";
    pub const LINE: &str = "Line";
    pub const MAX_REQUEST_TIME: &str = "Max request time (minutes)";
    pub const MAX_TIME: &str = "Max time";
    pub const NAME: &str = "Name";
    pub const ON: &str = "On";
    pub const OS: &str = "OS";
    pub const PORT: &str = "Port";
    pub const PORTS: &str = "Ports";
    pub const PROBLEMS: &str = "Problems";
    pub const PROTOCOL: &str = "Protocol";
    pub const PROVIDER: &str = "Provider";
    pub const QUEUED: &str = "Queued";
    pub const REASON: &str = "Reason";
    pub const RECIPIENT: &str = "Recipient";
    pub const REQUESTED: &str = "Requested";
    pub const REQUESTER: &str = "Requester";
    pub const RESULT: &str = "Result";
    pub const ROLE: &str = "Role";
    pub const ROLES: &str = "Roles";
    pub const SCHEDULE_AHEAD: &str = "Schedule ahead (days)";
    /// The column of a list's tick boxes, whose head is a "select all" link.
    pub const SELECT: &str = "Select";
    pub const SOURCE: &str = "Source";
    pub const STATUS: &str = "Status";
    pub const SUBJECT: &str = "Subject";
    pub const TARGET: &str = "Target";
    pub const TIME: &str = "Time";
    pub const TOKEN: &str = "Token";
    pub const USER: &str = "User";
    pub const VM: &str = "VM";
    pub const WIDEST_SOURCE: &str = "Widest per-request source (IPv4 / IPv6 prefix)";
}

/// The head of a table whose columns are plain names.
#[component]
pub fn TableHead(cols: &'static [&'static str]) -> impl IntoView {
    view! {
        <thead><tr>{cols.iter().map(|c| view! { <th scope="col">{*c}</th> }).collect_view()}</tr></thead>
    }
}

/// The layout of every signed-in page: header with product name, navigation and the
/// signed-in user, then the page content.
#[component]
pub fn Shell(children: Children) -> impl IntoView {
    let user = expect_context::<UserResource>();
    let logout = ServerAction::<Logout>::new();
    let waiting = Resource::new(|| (), |_| crate::api::notify::approvals_waiting());
    // Before the activity log is first opened, so that it is in local time from its first byte.
    Effect::new(|_| crate::pages::remember_browser_zone());
    let user_view = move || {
        Suspend::new(async move {
            match user.await {
                Ok(Some(u)) => {
                    let admin = u.can_manage_users;
                    // A failed count only loses the badge, never the page.
                    let waiting = waiting.await.unwrap_or_default();
                    let waiting_n = (waiting.count > 0).then(|| {
                        format!("{}{}", waiting.count, if waiting.more { "+" } else { "" })
                    });
                    // Closed, the menu still says that something waits.
                    let menu_badge = waiting_n.clone().map(|n| {
                        view! {
                            " "
                            <span class="badge" data-testid="menu-badge">
                                <span aria-hidden="true">{n.clone()}</span>
                                <span class="sr-only">{format!("({n} waiting for you)")}</span>
                            </span>
                        }
                    });
                    let badge = waiting_n.map(|n| {
                        view! {
                            " "
                            <span class="badge" data-testid="waiting-badge">
                                <span aria-hidden="true">{n.clone()}</span>
                                <span class="sr-only">{format!("({n} waiting for you)")}</span>
                            </span>
                        }
                    });
                    // One menu: the whole header on a wide screen, a "Menu" that opens
                    // by tap, Enter or Space on a phone, with or without JavaScript.
                    view! {
                        <details class="site-menu">
                        <summary class="site-menu-toggle">
                            <span aria-hidden="true">"☰"</span>"Menu"{menu_badge}
                        </summary>
                        <div class="site-menu-body">
                        <nav class="nav" aria-label="Main">
                            <a href="/">"Overview"</a>
                            <a href="/jit">"Just-in-time"</a>
                            <a href="/requests">"Requests"{badge}</a>
                            <a href="/activity">"Activity log"</a>
                            {admin.then(|| view! { <a href="/admin/users">"Users & roles"</a> })}
                            {admin.then(|| view! { <a href="/admin/notifications">"Notifications"</a> })}
                        </nav>
                        <div class="user-box">
                            <span class="user-name" data-testid="signed-in-user">{u.display_name.clone()}" ("{u.username.clone()}")"</span>
                            <a href="/tokens" class="link">"API tokens"</a>
                            <a href="/account/notifications" class="link">"My notifications"</a>
                            {(!u.federated).then(|| view! { <a href="/account/password" class="link">"Change password"</a> })}
                            <ActionForm action=logout attr:class="inline-form">
                                <button type="submit" class="btn small">"Sign out"</button>
                            </ActionForm>
                        </div>
                        </div>
                        </details>
                    }
                    .into_any()
                }
                _ => {
                    view! { <div class="user-box"><a href="/login">"Sign in"</a></div> }.into_any()
                }
            }
        })
    };
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <header class="topbar">
            <a class="brand" href="/">
                <span class="brand-mark" aria-hidden="true">"▦"</span>
                " Portcullis"
            </a>
            <Transition fallback=|| ()>{user_view}</Transition>
        </header>
        <main id="main" class="content"><crate::api::flash::Flash />{children()}</main>
    }
}

/// A labelled input whose validation message, if the last submission had one for this
/// field, is shown under it and announced to assistive technology.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(into)] err: Signal<Option<AppError>>,
    /// The current value, for forms that edit something.
    #[prop(optional, into)]
    value: Option<String>,
    /// Keeps ids unique when two forms on one page share field names.
    #[prop(default = "f")]
    id_prefix: &'static str,
) -> impl IntoView {
    let id = format!("{id_prefix}-{name}");
    let msg_id = format!("{id}-error");
    let msg = move || err.get().and_then(|e| e.field_message(name));
    view! {
        <div class="field" class:invalid=move || msg().is_some()>
            <label for=id.clone()>{label}</label>
            <input
                id=id.clone()
                type=kind
                name=name
                value=value
                autocomplete=(!autocomplete.is_empty()).then_some(autocomplete)
                aria-invalid=move || msg().is_some().then_some("true")
                aria-describedby=msg_id.clone()
            />
            {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
            <p class="field-error" id=msg_id aria-live="polite">{msg}</p>
        </div>
    }
}

/// A select whose options are (value, label) pairs.
#[component]
pub fn SelectField(
    label: &'static str,
    name: &'static str,
    options: &'static [(&'static str, &'static str)],
    #[prop(into)] err: Signal<Option<AppError>>,
    #[prop(optional)] id_suffix: String,
) -> impl IntoView {
    let id = format!("f-{name}{id_suffix}");
    let msg = move || err.get().and_then(|e| e.field_message(name));
    view! {
        <div class="field" class:invalid=move || msg().is_some()>
            <label for=id.clone()>{label}</label>
            <select id=id name=name>
                {options.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
            </select>
            <p class="field-error" aria-live="polite">{msg}</p>
        </div>
    }
}

/// The summary of the last submission's error, if any.
#[component]
pub fn FormAlert(#[prop(into)] err: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        err.get().map(|e| {
            view! { <div class="alert error" role="alert">{e.to_string()}</div> }
        })
    }
}

/// Shorthand: the error of an action's last result.
pub fn action_error<I, O>(action: ServerAction<I>) -> Signal<Option<AppError>>
where
    I: leptos::server_fn::ServerFn<Output = O, Error = AppError> + Clone + Send + Sync + 'static,
    O: Clone + Send + Sync + 'static,
{
    Signal::derive(move || action.value().get().and_then(Result::err))
}

/// The current time, ticking every second in the browser; the server renders with its own.
#[derive(Clone, Copy)]
pub struct Clock(pub RwSignal<i64>);

pub fn now_ms() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(all(feature = "ssr", not(feature = "hydrate")))]
    {
        chrono::Utc::now().timestamp_millis()
    }
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    {
        0
    }
}

pub fn provide_clock() {
    let now = RwSignal::new(now_ms());
    provide_context(Clock(now));
    Effect::new(move |_| {
        let _ =
            set_interval_with_handle(move || now.set(now_ms()), std::time::Duration::from_secs(1));
    });
}

/// Time left until `end_ms`, counting down live once the page is hydrated.
#[component]
pub fn Countdown(end_ms: i64) -> impl IntoView {
    let now = use_context::<Clock>().map(|c| c.0);
    let text = move || {
        let left = end_ms - now.map(|n| n.get()).unwrap_or_else(now_ms);
        if left <= 0 {
            "ended".to_owned()
        } else {
            format!("{} left", crate::model::format_remaining(left))
        }
    };
    view! { <span class="countdown" data-end=end_ms.to_string()>{text}</span> }
}

/// A UTC time, shown in the viewer's local time once the page is hydrated.
#[component]
pub fn LocalTime(ms: i64) -> impl IntoView {
    let utc = crate::model::format_utc(ms);
    let shown = RwSignal::new(utc.clone());
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        {
            let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
            shown.set(String::from(
                d.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED),
            ));
        }
    });
    let iso = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    view! { <time datetime=iso title=utc>{move || shown.get()}</time> }
}

/// When something was last used, or "never".
#[component]
pub fn LastUsed(ms: Option<i64>) -> impl IntoView {
    match ms {
        Some(ms) => view! { <LocalTime ms /> }.into_any(),
        None => view! { <span class="muted">"never"</span> }.into_any(),
    }
}

/// Previous / next links that keep the other query parameters.
#[component]
pub fn Pager(base: String, page: i64, page_size: i64, total: i64) -> impl IntoView {
    let pages = ((total + page_size - 1) / page_size).max(1);
    let link = move |p: i64| {
        format!(
            "{base}{}page={p}",
            if base.contains('?') { "&" } else { "?" }
        )
    };
    view! {
        <nav class="pager" aria-label="Pagination">
            {(page > 1).then(|| view! { <a href=link(page - 1) rel="prev">"← Previous"</a> })}
            <span>{format!("Page {page} of {pages} · {total} in all")}</span>
            {(page < pages).then(|| view! { <a href=link(page + 1) rel="next">"Next →"</a> })}
        </nav>
    }
}

/// The message of one field of the last submission, for fields rendered by hand.
#[component]
pub fn FieldMsg(#[prop(into)] err: Signal<Option<AppError>>, field: String) -> impl IntoView {
    let id = format!("{}-error", field.replace(['[', ']', '.'], "_"));
    let msg = move || err.get().and_then(|e| e.field_message(&field));
    view! { <p class="field-error" id=id aria-live="polite">{msg}</p> }
}

/// An enforcement status as a badge: an icon and the text, coloured by its level
/// (`ok`, `info`, `warning`, `error`, `neutral`), so that a silent agent or an error
/// stands out in a long list, and does so without colour too (the icon and the word).
#[component]
pub fn StatusBadge(level: String, text: String) -> impl IntoView {
    let (icon, word) = match level.as_str() {
        "ok" => ("✓", "OK"),
        "info" => ("…", "In progress"),
        "warning" => ("!", "Warning"),
        "error" => ("✕", "Error"),
        _ => ("–", "Note"),
    };
    let class = format!("state state-{level}");
    view! {
        <span class=class data-level=level>
            <span class="state-icon" aria-hidden="true">{icon}</span>
            <span class="sr-only">{format!("{word}: ")}</span>
            {text}
        </span>
    }
}

/// Where a page sits, as links back up: "Just-in-time › web-1".
#[component]
pub fn Breadcrumbs(
    /// The pages above this one, outermost first: (link, label).
    trail: Vec<(String, String)>,
    /// This page.
    #[prop(into)]
    here: String,
) -> impl IntoView {
    view! {
        <nav class="breadcrumbs" aria-label="Breadcrumb">
            <ol>
                {trail.into_iter().map(|(href, label)| view! { <li><a href=href>{label}</a></li> }).collect_view()}
                <li aria-current="page">{here}</li>
            </ol>
        </nav>
    }
}

/// A button that copies `text` to the clipboard and then says "Copied". Hidden until the
/// page is hydrated: without JavaScript it could do nothing, and the text stays there to
/// select by hand.
#[component]
pub fn CopyButton(text: String, #[prop(into)] label: String) -> impl IntoView {
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    // None: not clicked yet; Some(ok): what the clipboard answered.
    let copied = RwSignal::new(None::<bool>);
    let on_click = move |_| {
        #[cfg(feature = "hydrate")]
        copy_to_clipboard(&text, copied);
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <button type="button" class="btn small copy" hidden=move || !hydrated.get() on:click=on_click>
            {move || match copied.get() {
                None => label.clone(),
                Some(true) => "Copied".to_owned(),
                Some(false) => "Copy failed: select it and copy by hand".to_owned(),
            }}
        </button>
    }
}

/// `navigator.clipboard.writeText(text)`, reporting the outcome into `copied`. Called
/// through `js_sys::Reflect` so that the app needs no further web-sys features.
#[cfg(feature = "hydrate")]
fn copy_to_clipboard(text: &str, copied: RwSignal<Option<bool>>) {
    use js_sys::{Function, Reflect};
    use wasm_bindgen::prelude::*;
    fn get(target: &JsValue, key: &str) -> Option<JsValue> {
        Reflect::get(target, &JsValue::from_str(key)).ok()
    }
    let promise = get(&js_sys::global().into(), "navigator")
        .and_then(|n| get(&n, "clipboard"))
        .filter(|c| !c.is_undefined() && !c.is_null())
        .and_then(|clipboard| {
            let write: Function = get(&clipboard, "writeText")?.dyn_into().ok()?;
            write.call1(&clipboard, &JsValue::from_str(text)).ok()
        });
    // No clipboard (a page not served over HTTPS or localhost): say so at once.
    let Some(then) = promise
        .as_ref()
        .and_then(|p| get(p, "then"))
        .and_then(|t| t.dyn_into::<Function>().ok())
    else {
        copied.set(Some(false));
        return;
    };
    let ok = Closure::once_into_js(move |_: JsValue| copied.set(Some(true)));
    let failed = Closure::once_into_js(move |_: JsValue| copied.set(Some(false)));
    if then
        .call2(
            promise.as_ref().unwrap_or(&JsValue::UNDEFINED),
            &ok,
            &failed,
        )
        .is_err()
    {
        copied.set(Some(false));
    }
}

/// Asks before an action that cannot be undone, naming what it acts on. The trigger is a
/// link to the confirmation page (`/confirm?…`), so without JavaScript the question is a
/// page of its own; once hydrated the link opens a modal `<dialog>` with the same question,
/// Cancel, and `children`: the action's form with its destructive button. The browser
/// moves focus into the dialog (to Cancel, the first control), Escape cancels, and focus
/// goes back to the trigger when it closes.
#[component]
pub fn Confirm(
    /// Unique on the page: names the dialog's heading and text.
    #[prop(into)]
    id: String,
    /// What the trigger says.
    #[prop(into)]
    label: String,
    /// The trigger's accessible name when its text alone does not say what it acts on.
    #[prop(optional, into)]
    aria_label: Option<String>,
    #[prop(default = "btn danger")] class: &'static str,
    /// The confirmation page, from [`crate::model::ask::href`].
    #[prop(into)]
    href: String,
    /// The question and what follows from it, from [`crate::model::ask`].
    question: (String, String),
    /// True while the action runs: the dialog closes as it starts.
    #[prop(into)]
    pending: Signal<bool>,
    children: Children,
) -> impl IntoView {
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    let opener = NodeRef::<leptos::html::A>::new();
    let open = move |ev: leptos::ev::MouseEvent| {
        // Should the dialog not open, the link still leads to the page that asks.
        if let Some(d) = dialog.get()
            && d.show_modal().is_ok()
        {
            ev.prevent_default();
        }
    };
    let cancel = move |_| {
        if let Some(d) = dialog.get() {
            d.close();
        }
    };
    let closed = move |_| {
        if let Some(a) = opener.get() {
            let _ = a.focus();
        }
    };
    Effect::new(move |_| {
        if pending.get()
            && let Some(d) = dialog.get_untracked()
        {
            d.close();
        }
    });
    let (q_id, d_id) = (format!("{id}-q"), format!("{id}-d"));
    let (labelled_by, described_by) = (q_id.clone(), d_id.clone());
    let (question, detail) = question;
    view! {
        <a href=href class=class node_ref=opener aria-label=aria_label on:click=open>{label}</a>
        <dialog node_ref=dialog class="confirm-dialog" aria-labelledby=labelled_by aria-describedby=described_by on:close=closed>
            <h2 id=q_id>{question}</h2>
            <p id=d_id>{detail}</p>
            <div class="dialog-actions">
                <button type="button" class="btn" on:click=cancel>"Cancel"</button>
                {children()}
            </div>
        </dialog>
    }
}
