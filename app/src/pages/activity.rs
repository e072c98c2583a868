//! The activity log: filters (with suggestions, and each bad one flagged beside its field
//! while the log stays readable), pages in UTC or the browser's zone, CSV download, and
//! whether the hash chain verifies.

use crate::api::jit::{VerifyActivityLog, activity, activity_suggestions};
use crate::components::col;
use crate::components::{FormAlert, Pager, Shell, action_error};
use crate::domain::FieldErrors;
use crate::model::zone_name;
use crate::pages::jit::urlencode;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The page's query: the filters as typed, the page, and the zone choice.
#[derive(Clone, Debug, PartialEq, Default)]
struct Filters {
    vm: String,
    actor: String,
    action: String,
    from: String,
    to: String,
    page: i64,
    /// `utc`, `local`, or empty (not chosen: local where the browser's zone is known).
    tz: String,
    /// The browser's zone as the hydrated form sent it (an IANA name), if it did.
    zone: String,
}

impl Filters {
    /// The query string of the filters, without the page.
    fn query(&self) -> String {
        format!(
            "vm={}&actor={}&action={}&from={}&to={}&tz={}&zone={}",
            urlencode(&self.vm),
            urlencode(&self.actor),
            urlencode(&self.action),
            urlencode(&self.from),
            urlencode(&self.to),
            urlencode(&self.tz),
            urlencode(&self.zone),
        )
    }
}

/// The browser's IANA time zone (`Asia/Kolkata`), known only once the page runs.
#[cfg(feature = "hydrate")]
fn browser_zone() -> Option<String> {
    let format = js_sys::Intl::DateTimeFormat::new(&js_sys::Array::new(), &js_sys::Object::new());
    js_sys::Reflect::get(&format.resolved_options(), &"timeZone".into())
        .ok()?
        .as_string()
        .filter(|z| !z.is_empty())
}

/// The cookie that remembers the browser's time zone (an IANA name). With it the server
/// renders the log in that zone from the first byte and the hydrated page, which reads the
/// same cookie, asks for nothing else: the times never jump from UTC.
pub const ZONE_COOKIE: &str = "portcullis_tz";

/// The zone in a `Cookie` header's value (or `document.cookie`), if it is a zone name.
fn cookie_zone(cookies: &str) -> Option<String> {
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix(ZONE_COOKIE)?.strip_prefix('='))
        .and_then(zone_name)
        .map(str::to_owned)
}

/// The zone an earlier page of this browser remembered: the server reads it from the
/// request, the hydrated page from `document.cookie`, so both ask for the same log.
fn remembered_zone() -> String {
    #[cfg(feature = "ssr")]
    let cookies = use_context::<http::request::Parts>().map(|p| {
        p.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join("; ")
    });
    #[cfg(feature = "hydrate")]
    let cookies = js_sys::Reflect::get(&document(), &"cookie".into())
        .ok()
        .and_then(|v| v.as_string());
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    let cookies: Option<String> = None;
    cookies.as_deref().and_then(cookie_zone).unwrap_or_default()
}

/// Remembers the browser's zone for the pages that follow (every page's shell calls it
/// once hydrated, so the log is in local time on its first visit). Not a secret; a year.
pub fn remember_browser_zone() {
    #[cfg(feature = "hydrate")]
    if let Some(z) = browser_zone().as_deref().and_then(zone_name)
        && remembered_zone() != z
    {
        let cookie = format!("{ZONE_COOKIE}={z}; path=/; max-age=31536000; samesite=lax");
        let _ = js_sys::Reflect::set(&document(), &"cookie".into(), &cookie.into());
    }
}

#[component]
pub fn ActivityPage() -> impl IntoView {
    let query = use_query_map();
    let filters = move || {
        let q = query.get();
        let g = |k: &str| q.get(k).unwrap_or_default();
        Filters {
            vm: g("vm"),
            actor: g("actor"),
            action: g("action"),
            from: g("from"),
            to: g("to"),
            page: q
                .get("page")
                .and_then(|p| p.parse::<i64>().ok())
                .unwrap_or(1),
            tz: g("tz"),
            zone: g("zone"),
        }
    };
    // The browser's zone as an earlier page remembered it. Without JavaScript no page ever
    // ran to remember it: UTC.
    let remembered = StoredValue::new(remembered_zone());
    let browser = RwSignal::new(None::<String>);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        browser.set(
            browser_zone()
                .as_deref()
                .and_then(zone_name)
                .map(str::to_owned),
        );
    });
    // For the "Local time" choice and the form's hidden field, so that a link made by the
    // form carries its zone and reads the same for whoever opens it.
    let known_zone = move || browser.get().unwrap_or_else(|| remembered.get_value());
    // The zone the server is asked for, and whether it is only a guess: none (UTC) when UTC
    // is chosen; the link's own zone before this browser's; else the browser's zone, as an
    // earlier page remembered it (so the page the server rendered is the page the hydrated
    // one shows) until the browser tells its own: on a first visit, or after travel, the
    // times follow once, after hydration. A guessed zone the server does not know reads the
    // log in UTC without flagging the filters the user never touched.
    let zone = move || {
        let f = filters();
        if f.tz == "utc" {
            (String::new(), false)
        } else if !f.zone.is_empty() {
            (f.zone, false)
        } else {
            let guess = browser.get().unwrap_or_else(|| remembered.get_value());
            (guess, f.tz.is_empty())
        }
    };
    // Suggestions for what is being typed, once the page runs: per filter, the text asked
    // about and the names found. Each filter asks once its typing pauses, and keeps only
    // the answer to its latest question.
    let live_vm = Live::new();
    let live_actor = Live::new();
    let verify = ServerAction::<VerifyActivityLog>::new();
    let verify_err = action_error(verify);
    let data = Resource::new(
        move || (filters(), zone(), verify.version().get()),
        |(f, (zone, guessed), _)| {
            activity(f.vm, f.actor, f.action, f.from, f.to, f.page, zone, guessed)
        },
    );

    let body = move || {
        let f = filters();
        let base = format!("/activity?{}", f.query());
        Suspend::new(async move {
            let p = match data.await {
                Ok(p) => p,
                Err(e) => {
                    return view! { <div class="alert error" role="alert">{e.summary()}</div> }
                        .into_any();
                }
            };
            let zone_shown = if p.zone == "UTC" {
                "UTC".to_owned()
            } else {
                format!("{} ({})", p.zone, p.zone_offset)
            };
            // The download asks for what the page shows: the filters it applied.
            let applied = |field: &str, value: &str| {
                if p.errors.get(field).is_some() {
                    String::new()
                } else {
                    value.to_owned()
                }
            };
            let csv = Filters {
                vm: applied("vm", &f.vm),
                actor: applied("actor", &f.actor),
                action: applied("action", &f.action),
                from: applied("from", &f.from),
                to: applied("to", &f.to),
                page: 1,
                tz: String::new(),
                zone: if p.zone == "UTC" {
                    String::new()
                } else {
                    p.zone.clone()
                },
            };
            let csv_href = format!(
                "/activity.csv?vm={}&actor={}&action={}&from={}&to={}&zone={}",
                urlencode(&csv.vm),
                urlencode(&csv.actor),
                urlencode(&csv.action),
                urlencode(&csv.from),
                urlencode(&csv.to),
                urlencode(&csv.zone)
            );
            let local_chosen = f.tz == "local" || (f.tz.is_empty() && p.zone != "UTC");
            let local_label = move || match known_zone() {
                z if z.is_empty() => "Local time (needs JavaScript)".to_owned(),
                z => format!("Local time ({z})"),
            };
            let tz_hint = if f.tz == "local" && p.zone == "UTC" && p.errors.get("tz").is_none() {
                "Your browser's time zone is not known without JavaScript: times and dates are in UTC."
            } else {
                "Times are shown, and dates read, in this zone."
            };
            let date_zone = p.zone.clone();
            // The fields as they are now; the suggestions follow them as they are typed.
            let vm_now = StoredValue::new(f.vm.clone());
            let actor_now = StoredValue::new(f.actor.clone());
            let on_vm = Callback::new(move |v: String| {
                vm_now.set_value(v.clone());
                live_vm.ask("vm", v);
            });
            let on_actor = Callback::new(move |v: String| {
                actor_now.set_value(v.clone());
                live_actor.ask("actor", v);
            });
            // What the server found for the field as it is, else what the page came with.
            let suggested = move |live: Live, now: StoredValue<String>, loaded: &[String]| {
                let loaded = loaded.to_vec();
                move || {
                    live.names_for(&now.get_value())
                        .unwrap_or_else(|| loaded.clone())
                }
            };
            let vm_options = suggested(live_vm, vm_now, &p.vms);
            let actor_options = suggested(live_actor, actor_now, &p.actors);
            let actions = p.actions.clone();
            let action_options = move || actions.clone();
            view! {
                <form method="get" action="/activity" class="filters" data-testid="activity-filters">
                    <FilterField id="fl-vm" name="vm" label="VM".into() value=f.vm.clone() list="fl-vm-list"
                        hint="Names starting with this, any case; in \"quotes\", the whole name." errors=p.errors.clone()
                        on_input=on_vm />
                    {options("fl-vm-list", vm_options)}
                    <FilterField id="fl-actor" name="actor" label="User".into() value=f.actor.clone() list="fl-actor-list"
                        hint="Names starting with this, any case; in \"quotes\", the whole name." errors=p.errors.clone()
                        on_input=on_actor />
                    {options("fl-actor-list", actor_options)}
                    <FilterField id="fl-action" name="action" label="Action".into() value=f.action.clone() list="fl-action-list"
                        hint="Exactly this action." errors=p.errors.clone() />
                    {options("fl-action-list", action_options)}
                    <FilterField id="fl-from" name="from" kind="date" label=format!("From (date, {date_zone})") value=f.from.clone()
                        hint="From the start of this day." errors=p.errors.clone() />
                    <FilterField id="fl-to" name="to" kind="date" label=format!("To (date, {date_zone})") value=f.to.clone()
                        hint="To the end of this day." errors=p.errors.clone() />
                    <div class="field" class:invalid=p.errors.get("tz").is_some()>
                        <label for="fl-tz">"Times in"</label>
                        <select id="fl-tz" name="tz" aria-describedby="fl-tz-hint fl-tz-error"
                            aria-invalid=p.errors.get("tz").is_some().then_some("true")>
                            <option value="utc" selected=!local_chosen>"UTC"</option>
                            <option value="local" selected=local_chosen>{local_label}</option>
                        </select>
                        <input type="hidden" name="zone" value=known_zone />
                        <p class="hint" id="fl-tz-hint">{tz_hint}</p>
                        <p class="field-error" id="fl-tz-error" aria-live="polite">{p.errors.get("tz").map(str::to_owned)}</p>
                    </div>
                    <div class="actions">
                        <button type="submit" class="btn primary">"Filter"</button>
                        <a class="btn" href=csv_href download="activity.csv">"Download CSV"</a>
                    </div>
                </form>
                <div class=if p.chain_ok { "alert success" } else { "alert error" } role="status" data-testid="chain-status">{p.chain_message.clone()}</div>
                <p class="hint" data-testid="zone-label">{format!("Times in {zone_shown}.")}</p>
                {
                // The time column names its zone; a phone's card labels say the same.
                let time_head = format!("{} ({})", col::TIME, p.zone);
                view! {
                <table class="table log" data-testid="activity-table">
                    <thead><tr>
                        <th scope="col">{time_head.clone()}</th><th scope="col">"Actor"</th><th scope="col">"Action"</th><th scope="col">"VM"</th>
                        <th scope="col">"Ports"</th><th scope="col">"Source"</th><th scope="col">"Justification"</th>
                        <th scope="col">"Result"</th><th scope="col">"Details"</th>
                    </tr></thead>
                    <tbody>
                        {p.rows.iter().zip(p.shown_at.iter()).map(|(r, at)| view! {
                            <tr data-action=r.action.clone()>
                                <td data-label=time_head.clone()><time datetime=iso(r.at)>{at.clone()}</time></td>
                                <td data-label=col::ACTOR>{r.actor.clone()}<br /><span class="muted">{r.client_ip.clone()}</span></td>
                                <td data-label=col::ACTION>{r.action.clone()}</td>
                                <td data-label=col::VM>{r.vm.clone()}</td>
                                <td data-label=col::PORTS>{r.ports.clone()}</td>
                                <td data-label=col::SOURCE>{r.source.clone()}</td>
                                <td data-label=col::JUSTIFICATION>{r.justification.clone()}</td>
                                <td data-label=col::RESULT>{r.result.clone()}</td>
                                <td data-label=col::DETAILS>{r.detail.clone()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                }
                }
                <Pager base page=p.page page_size=p.page_size total=p.total />
            }
            .into_any()
        })
    };

    view! {
        <Title text="Activity log" />
        <Shell>
            <h1>"Activity log"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
            <section class="card">
                <h2>"Verify the whole log"</h2>
                <p class="hint">"The log is verified as it grows: each new entry once, against a signed checkpoint. Administrators over everything can check every entry again now (it reads the whole log)."</p>
                <FormAlert err=verify_err />
                {move || verify.value().get().and_then(Result::ok).map(|m| view! { <div class="alert info" role="status" data-testid="verify-result">{m}</div> })}
                <ActionForm action=verify attr:class="inline-form">
                    <button type="submit" class="btn">"Verify the whole log now"</button>
                </ActionForm>
            </section>
        </Shell>
    }
}

/// One filter's suggestions as the server answered them while it was typed in.
#[derive(Clone, Copy)]
struct Live {
    /// The text last asked about and the names found for it.
    answer: RwSignal<Option<(String, Vec<String>)>>,
    /// How many questions were asked: only the latest one is sent and its answer kept.
    asked: StoredValue<u64>,
}

impl Live {
    /// How long typing must pause before the server is asked: a name typed at speed is one
    /// question, not one a keystroke.
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

    fn new() -> Self {
        Self {
            answer: RwSignal::new(None),
            asked: StoredValue::new(0),
        }
    }

    /// Asks for the names of `field` starting with `typed`, once typing pauses.
    fn ask(self, field: &'static str, typed: String) {
        self.asked.update_value(|n| *n += 1);
        let mine = self.asked.get_value();
        // The page may be gone by the time the pause ends or the answer comes.
        let latest = move || self.asked.try_get_value() == Some(mine);
        set_timeout(
            move || {
                if !latest() {
                    return;
                }
                leptos::task::spawn_local(async move {
                    if let Ok(names) = activity_suggestions(field.to_owned(), typed.clone()).await
                        && latest()
                    {
                        self.answer.set(Some((typed, names)));
                    }
                });
            },
            Self::PAUSE,
        );
    }

    /// The names found for `typed`, if that is what was last answered.
    fn names_for(self, typed: &str) -> Option<Vec<String>> {
        self.answer
            .get()
            .and_then(|(asked, names)| (asked == typed).then_some(names))
    }
}

/// A filter's suggestions, as they are now.
fn options(
    id: &'static str,
    values: impl Fn() -> Vec<String> + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <datalist id=id>
            {move || values().into_iter().map(|v| view! { <option value=v></option> }).collect_view()}
        </datalist>
    }
}

/// A time as the machine-readable `datetime` attribute wants it (UTC).
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// One filter: its label, the value as typed, a hint, and the message of the last reading
/// beside it (announced, and tied to the input).
#[component]
fn FilterField(
    id: &'static str,
    name: &'static str,
    label: String,
    value: String,
    hint: &'static str,
    errors: FieldErrors,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] list: Option<&'static str>,
    /// Told the value as it is typed (hydrated only).
    #[prop(optional)]
    on_input: Option<Callback<String>>,
) -> impl IntoView {
    let msg = errors.get(name).map(str::to_owned);
    let invalid = msg.is_some();
    view! {
        <div class="field" class:invalid=invalid>
            <label for=id>{label}</label>
            <input id=id name=name type=kind value=value list=list autocomplete="off"
                on:input=move |ev| {
                    if let Some(cb) = on_input {
                        cb.run(event_target_value(&ev));
                    }
                }
                aria-describedby=format!("{id}-hint {id}-error")
                aria-invalid=invalid.then_some("true") />
            <p class="hint" id=format!("{id}-hint")>{hint}</p>
            <p class="field-error" id=format!("{id}-error") aria-live="polite">{msg}</p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::{ZONE_COOKIE, cookie_zone};

    #[test]
    fn the_remembered_zone_is_read_from_the_cookie_header_and_only_if_it_is_a_zone_name() {
        let header = format!("id=abc; {ZONE_COOKIE}=Asia/Kolkata; other=1");
        assert_eq!(cookie_zone(&header).as_deref(), Some("Asia/Kolkata"));
        assert_eq!(
            cookie_zone(&format!("{ZONE_COOKIE}=America/Port-au-Prince")).as_deref(),
            Some("America/Port-au-Prince")
        );
        assert_eq!(cookie_zone("id=abc"), None);
        assert_eq!(cookie_zone(&format!("{ZONE_COOKIE}x=Europe/Paris")), None);
        assert_eq!(cookie_zone(&format!("{ZONE_COOKIE}=")), None);
        assert_eq!(cookie_zone(&format!("{ZONE_COOKIE}=<script>")), None);
        assert_eq!(
            cookie_zone(&format!("{ZONE_COOKIE}=../../etc/passwd")),
            None
        );
        assert_eq!(
            cookie_zone(&format!("{ZONE_COOKIE}={}", "A".repeat(65))),
            None
        );
    }
}
