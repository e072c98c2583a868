use crate::api::ChangePassword;
use crate::components::UserResource;
use crate::components::{Field, FormAlert, Shell, action_error};
use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn PasswordPage() -> impl IntoView {
    let action = ServerAction::<ChangePassword>::new();
    let err = action_error(action);
    let user = expect_context::<UserResource>();
    let forced = move || {
        Suspend::new(async move {
            matches!(user.await, Ok(Some(u)) if u.must_change_password).then(|| {
                view! {
                    <div class="alert warning" role="status">
                        "You signed in with a one-time password. Choose your own password before you continue."
                    </div>
                }
            })
        })
    };
    view! {
        <Title text="Change password" />
        <Shell>
            <h1>"Change password"</h1>
            <Transition fallback=|| ()>{forced}</Transition>
            <div class="card narrow">
                <FormAlert err />
                <ActionForm action attr:class="form">
                    <Field label="Current password" name="current_password" kind="password" autocomplete="current-password" err />
                    <Field label="New password" name="new_password" kind="password" autocomplete="new-password"
                        hint="At least 12 characters, not containing your user name." err />
                    <Field label="Repeat new password" name="confirm_password" kind="password" autocomplete="new-password" err />
                    <button type="submit" class="btn primary">"Change password"</button>
                </ActionForm>
            </div>
        </Shell>
    }
}
