use crate::api::sso::{AddGroupRule, RemoveGroupRule, list_group_rules, load_sign_in_options};
use crate::api::tokens::{RevokeApiToken, list_all_api_tokens};
use crate::api::{AddRole, CreateUser, RemoveRole, ResetPassword, SetUserDisabled, list_users};
use crate::components::{
    Confirm, Field, FormAlert, LastUsed, LocalTime, SelectField, Shell, TableHead, action_error,
    col,
};
use crate::error::AppError;
use crate::model::{UserRow, ask};
use leptos::prelude::*;
use leptos_meta::Title;

const ROLES: &[(&str, &str)] = &[
    ("requester", "Requester"),
    ("reader", "Reader"),
    ("approver", "Approver"),
    ("admin", "Admin"),
];
const SCOPES: &[(&str, &str)] = &[("all", "All VMs"), ("group", "A group"), ("vm", "One VM")];

#[component]
pub fn AdminUsersPage() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let add_role = ServerAction::<AddRole>::new();
    let remove_role = ServerAction::<RemoveRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let reset = ServerAction::<ResetPassword>::new();
    let add_rule = ServerAction::<AddGroupRule>::new();
    let remove_rule = ServerAction::<RemoveGroupRule>::new();
    let users = Resource::new(
        move || {
            (
                create.version().get(),
                add_role.version().get(),
                remove_role.version().get(),
                (set_disabled.version().get(), reset.version().get()),
                (add_rule.version().get(), remove_rule.version().get()),
            )
        },
        |_| list_users(),
    );
    let create_err = action_error(create);
    let row_err = Signal::derive(move || {
        add_role
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| remove_role.value().get().and_then(Result::err))
            .or_else(|| set_disabled.value().get().and_then(Result::err))
            .or_else(|| reset.value().get().and_then(Result::err))
    });
    let created = move || {
        matches!(create.value().get(), Some(Ok(_)))
            .then(|| view! { <div class="alert success" role="status">"User created."</div> })
    };

    let table = move || {
        Suspend::new(async move {
            match users.await {
                Ok(rows) => view! {
                    <table class="table" data-testid="users-table">
                        <TableHead cols=&[col::USER, col::ROLES, col::STATUS, col::ACTIONS] />
                        <tbody>
                            {rows.into_iter().map(|u| view! { <UserRowView user=u add_role remove_role set_disabled reset /> }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
                Err(e) => view! { <div class="alert error" role="alert">{e.summary()}</div> }.into_any(),
            }
        })
    };

    view! {
        <Title text="Users & roles" />
        <Shell>
            <h1>"Users & roles"</h1>
            <section class="card">
                <h2>"Users"</h2>
                <FormAlert err=row_err />
                <Transition fallback=|| view! { <p>"Loading…"</p> }>{table}</Transition>
            </section>
            <GroupRules add_rule remove_rule />
            <AllTokens />
            <section class="card">
                <h2>"Create a user"</h2>
                {created}
                <FormAlert err=create_err />
                <ActionForm action=create attr:class="form grid">
                    <Field label="User name" name="username" autocomplete="off" err=create_err />
                    <Field label="Display name" name="display_name" autocomplete="off" err=create_err />
                    <Field label="Initial password" name="password" kind="password" autocomplete="new-password"
                        hint="At least 12 characters." err=create_err />
                    <SelectField label="Role" name="role" options=ROLES err=create_err />
                    <SelectField label="Scope" name="scope_kind" options=SCOPES err=create_err />
                    <Field label="Group or VM name (for a group or VM scope)" name="scope_target" autocomplete="off"
                        hint="A group that holds VMs, or the name of an existing VM." err=create_err />
                    <div class="field checkbox">
                        <input id="f-must_change_password" type="checkbox" name="must_change_password" value="on" checked />
                        <label for="f-must_change_password">"Must change the password at first sign-in"</label>
                    </div>
                    <div class="actions"><button type="submit" class="btn primary">"Create user"</button></div>
                </ActionForm>
            </section>
        </Shell>
    }
}

#[component]
fn UserRowView(
    user: UserRow,
    add_role: ServerAction<AddRole>,
    remove_role: ServerAction<RemoveRole>,
    set_disabled: ServerAction<SetUserDisabled>,
    reset: ServerAction<ResetPassword>,
) -> impl IntoView {
    let no_err = Signal::derive(|| None);
    let reset_id = format!("p-{}", user.id);
    let uid_for_reset = user.id.clone();
    let local_password = user.local_password;
    let uid = user.id.clone();
    let role_id = format!("-{uid}");
    let kind_id = format!("-{uid}-k");
    let target_id = format!("t-{uid}");
    let uid_for_toggle = uid.clone();
    let toggle_to = if user.disabled { "false" } else { "true" };
    let toggle_label = if user.disabled { "Enable" } else { "Disable" };
    let username = user.username.clone();
    view! {
        <tr data-username=user.username.clone()>
            <td data-label=col::USER>
                <strong>{user.display_name.clone()}</strong>
                <br />
                <span class="muted">{user.username.clone()}</span>
                {(!user.identity.is_empty()).then(|| view! {
                    <br /><span class="muted small" data-testid="identity">"Signs in with "{user.identity.clone()}</span>
                })}
            </td>
            <td data-label=col::ROLES>
                <ul class="roles">
                    {user.roles.into_iter().map(|r| match r.via_group.clone() {
                        Some(group) => view! {
                            <li>
                                <span class="badge">{r.role.clone()}</span>" on "{r.scope.clone()}
                                <span class="muted">" (via group "{group}")"</span>
                            </li>
                        }.into_any(),
                        None => view! {
                            <li>
                                <span class="badge">{r.role.clone()}</span>" on "{r.scope.clone()}
                                " "
                                <Confirm id=format!("role-{}", r.id) label="Remove" class="btn link small"
                                    aria_label=format!("Remove role {} on {}", r.role, r.scope)
                                    href=ask::href(ask::ROLE, &r.id, "admin")
                                    question=ask::remove_role(&username, &r.role, &r.scope)
                                    pending=remove_role.pending()>
                                    <ActionForm action=remove_role attr:class="inline-form">
                                        <input type="hidden" name="assignment_id" value=r.id.clone() />
                                        <button type="submit" class="btn danger">"Remove role"</button>
                                    </ActionForm>
                                </Confirm>
                            </li>
                        }.into_any(),
                    }).collect_view()}
                </ul>
                <details>
                    <summary>"Add a role"</summary>
                    <ActionForm action=add_role attr:class="form compact">
                        <input type="hidden" name="user_id" value=uid />
                        <SelectField label="Role" name="role" options=ROLES err=no_err id_suffix=role_id />
                        <SelectField label="Scope" name="scope_kind" options=SCOPES err=no_err id_suffix=kind_id />
                        <div class="field">
                            <label for=target_id.clone()>"Group or VM name"</label>
                            <input id=target_id name="scope_target" type="text" />
                        </div>
                        <button type="submit" class="btn small">"Add role"</button>
                    </ActionForm>
                </details>
            </td>
            <td data-label=col::STATUS>
                {if user.disabled { "Disabled" } else if user.must_change_password { "Must change password" } else { "Active" }}
            </td>
            <td data-label=col::ACTIONS>
                <ActionForm action=set_disabled attr:class="inline-form">
                    <input type="hidden" name="user_id" value=uid_for_toggle />
                    <input type="hidden" name="disabled" value=toggle_to />
                    <button type="submit" class="btn small">{toggle_label}</button>
                </ActionForm>
                {local_password.then(|| view! {
                    <details>
                        <summary>"Reset password"</summary>
                        <ActionForm action=reset attr:class="form compact">
                            <input type="hidden" name="user_id" value=uid_for_reset />
                            <div class="field">
                                <label for=reset_id.clone()>"Temporary password"</label>
                                <input id=reset_id name="password" type="password" autocomplete="new-password" />
                            </div>
                            <p class="hint">"The user must change it at the next sign-in; their sessions end now."</p>
                            <button type="submit" class="btn small">"Set temporary password"</button>
                        </ActionForm>
                    </details>
                })}
            </td>
        </tr>
    }
}

/// Rules that give the members of an identity-provider group a role here, so that group
/// membership managed in the provider grants access in the portal.
#[component]
fn GroupRules(
    add_rule: ServerAction<AddGroupRule>,
    remove_rule: ServerAction<RemoveGroupRule>,
) -> impl IntoView {
    let rules = Resource::new(
        move || (add_rule.version().get(), remove_rule.version().get()),
        |_| list_group_rules(),
    );
    let options = Resource::new(|| (), |_| load_sign_in_options());
    let add_err = action_error(add_rule);
    let remove_err = action_error(remove_rule);
    let body = move || {
        Suspend::new(async move {
            let providers = options.await.map(|o| o.providers).unwrap_or_default();
            if providers.is_empty() {
                return view! {
                    <p class="muted">"No identity provider is configured (see [[oidc]] in the configuration)."</p>
                }
                .into_any();
            }
            let list = match rules.await {
                Ok(rows) if rows.is_empty() => view! { <p>"No group rules yet."</p> }.into_any(),
                Ok(rows) => view! {
                    <table class="table" data-testid="group-rules">
                        <TableHead cols=&[col::PROVIDER, col::GROUP, col::ROLE, col::ACTIONS] />
                        <tbody>
                            {rows.into_iter().map(|r| {
                                let label = format!("Remove rule for group {}", r.group);
                                view! {
                                <tr data-group=r.group.clone()>
                                    <td data-label=col::PROVIDER>{r.provider.clone()}</td>
                                    <td data-label=col::GROUP>{r.group.clone()}</td>
                                    <td data-label=col::ROLE><span class="badge">{r.role.clone()}</span>" on "{r.scope.clone()}</td>
                                    <td data-label=col::ACTIONS>
                                        <ActionForm action=remove_rule attr:class="inline-form">
                                            <input type="hidden" name="rule_id" value=r.id.clone() />
                                            <button type="submit" class="btn link small"
                                                aria-label=label>"Remove"</button>
                                        </ActionForm>
                                    </td>
                                </tr>
                            }}).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
                Err(e) => view! { <div class="alert error" role="alert">{e.summary()}</div> }.into_any(),
            };
            let choices: Vec<(String, String)> =
                providers.into_iter().map(|p| (p.id, p.name)).collect();
            view! {
                {list}
                <h3>"Add a group rule"</h3>
                <FormAlert err=add_err />
                <ActionForm action=add_rule attr:class="form grid">
                    <div class="field">
                        <label for="f-provider">"Identity provider"</label>
                        <select id="f-provider" name="provider">
                            {choices.into_iter().map(|(id, name)| view! { <option value=id>{name}</option> }).collect_view()}
                        </select>
                        <p class="field-error" aria-live="polite">{move || add_err.get().and_then(|e| e.field_message("provider"))}</p>
                    </div>
                    <Field label="Group (as the provider sends it)" name="group" autocomplete="off" err=add_err />
                    <SelectField label="Role" name="role" options=ROLES err=add_err id_suffix="-rule".to_owned() />
                    <SelectField label="Scope" name="scope_kind" options=SCOPES err=add_err id_suffix="-rule".to_owned() />
                    <div class="field">
                        <label for="f-scope_target-rule">"Group or VM (for a group or VM scope)"</label>
                        <input id="f-scope_target-rule" name="scope_target" type="text" autocomplete="off" />
                        <p class="field-error" aria-live="polite">{move || add_err.get().and_then(|e| e.field_message("scope_target"))}</p>
                    </div>
                    <div class="actions"><button type="submit" class="btn primary">"Add group rule"</button></div>
                </ActionForm>
            }
            .into_any()
        })
    };
    view! {
        <section class="card">
            <h2>"Identity-provider groups"</h2>
            <p class="muted">"Members of a group hold its roles for as long as the provider lists them in that group (checked at each sign-in)."</p>
            <FormAlert err=remove_err />
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </section>
    }
}

/// Every user's API tokens in force, each revocable here: for someone who has left or lost
/// a laptop, without disabling the account.
#[component]
fn AllTokens() -> impl IntoView {
    let revoke = ServerAction::<RevokeApiToken>::new();
    let revoke_err = action_error(revoke);
    let tokens = Resource::new(move || revoke.version().get(), |_| list_all_api_tokens());
    let body = move || {
        Suspend::new(async move {
            match tokens.await {
                Ok(rows) if rows.is_empty() => {
                    view! { <p class="muted">"No API token is in force."</p> }.into_any()
                }
                Ok(rows) => view! {
                    <table class="table" data-testid="all-tokens">
                        <TableHead cols=&[col::USER, col::NAME, col::TOKEN, col::EXPIRES, col::LAST_USED, col::ACTIONS] />
                        <tbody>
                            {rows.into_iter().map(|r| {
                                let t = r.token;
                                let label = format!("Revoke API token {} of {}", t.name, r.username);
                                let id = t.id.clone();
                                let question = ask::revoke_token(&t.name, &t.prefix, Some(&r.username));
                                let href = ask::href(ask::TOKEN, &t.id, "admin");
                                let confirm_id = format!("token-{}", t.id);
                                view! {
                                    <tr data-token=t.id>
                                        <td data-label=col::USER>{r.username.clone()}</td>
                                        <td data-label=col::NAME>{t.name.clone()}</td>
                                        <td data-label=col::TOKEN><code>{format!("{}…", t.prefix)}</code></td>
                                        <td data-label=col::EXPIRES><LocalTime ms=t.expires_at /></td>
                                        <td data-label=col::LAST_USED><LastUsed ms=t.last_used_at /></td>
                                        <td data-label=col::ACTIONS>
                                            <Confirm id=confirm_id label="Revoke" class="btn small" aria_label=label href question pending=revoke.pending()>
                                                <ActionForm action=revoke attr:class="inline-form">
                                                    <input type="hidden" name="id" value=id />
                                                    <button type="submit" class="btn danger">"Revoke token"</button>
                                                </ActionForm>
                                            </Confirm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any(),
                // The users list above already says so once.
                Err(AppError::Forbidden) => ().into_any(),
                Err(e) => view! { <div class="alert error" role="alert">{e.summary()}</div> }.into_any(),
            }
        })
    };
    view! {
        <section class="card">
            <h2>"API tokens in force"</h2>
            <p class="muted">"Every user's unexpired, unrevoked tokens. Revoking one stops it at once; the owner can create another unless their account is disabled."</p>
            <FormAlert err=revoke_err />
            <Transition fallback=|| view! { <p>"Loading…"</p> }>{body}</Transition>
        </section>
    }
}
