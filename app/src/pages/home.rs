use crate::components::Shell;
use crate::components::UserResource;
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn HomePage() -> impl IntoView {
    let user = expect_context::<UserResource>();
    let body = move || {
        Suspend::new(async move {
            match user.await {
                Ok(Some(u)) => view! {
                    <h1>"Welcome, "{u.display_name.clone()}</h1>
                    <section class="card">
                        <h2>"Your roles"</h2>
                        {if u.roles.is_empty() {
                            view! { <p>"You have no roles yet. Ask an administrator for access."</p> }.into_any()
                        } else {
                            view! {
                                <ul class="roles" data-testid="my-roles">
                                    {u.roles.iter().map(|r| {
                                        let via = r.via_group.as_ref().map(|g| format!(" (via group {g})"));
                                        view! { <li><span class="badge">{r.role.clone()}</span>" on "{r.scope.clone()}<span class="muted">{via}</span></li> }
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }}
                    </section>
                }
                .into_any(),
                Ok(None) => view! { <p>"You are signed out. " <a href="/login">"Sign in"</a></p> }.into_any(),
                Err(e) => view! { <div class="alert error" role="alert">{e.to_string()}</div> }.into_any(),
            }
        })
    };
    view! {
        <Title text="Overview" />
        <Shell>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </Shell>
    }
}
