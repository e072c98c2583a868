//! Store and service tests for single sign-on: federated users linked by (provider,
//! subject), profile refresh, group rules and the roles they grant. Each test runs on a
//! fresh SQLite file, or on a fresh PostgreSQL database when `PORTCULLIS_TEST_POSTGRES`
//! names a server.
#![cfg(feature = "ssr")]

use portcullis_app::domain::sso::{FederatedIdentity, GroupRule};
use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::services::sso::{
    FederatedSignIn, GroupRuleInput, TOKEN_GROUPS_FRESH_FOR_MS, add_group_rule, effective_roles,
    group_roles_of, remove_group_rule, sign_in_federated, token_roles,
};
use portcullis_app::store::{LogQuery, NewLogEntry, NewUser, Store, StoreError};
use std::net::IpAddr;

async fn fresh() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "sso")
        .await
        .unwrap();
    (Store::connect(&url).await.unwrap(), dir)
}

/// An administrator over everything, as the services see them.
async fn admin(store: &Store) -> portcullis_app::services::Actor {
    let user = store
        .create_user(
            &NewUser {
                username: "root",
                display_name: "Root",
                password_hash: Some("x"),
                must_change_password: false,
            },
            &[RoleAssignment {
                role: Role::Admin,
                scope: Scope::All,
            }],
            None,
        )
        .await
        .unwrap();
    portcullis_app::services::Actor {
        roles: effective_roles(store, &user.id).await.unwrap(),
        user_id: user.id,
        username: user.username,
        ip: ip(),
    }
}

fn ip() -> IpAddr {
    "198.51.100.7".parse().unwrap()
}

fn identity(subject: &str, name: &str, groups: &[&str]) -> FederatedIdentity {
    FederatedIdentity {
        subject: subject.into(),
        username_hint: name.into(),
        email: format!("{name}@example.org"),
        display_name: format!("{name} (display)"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

async fn signed_in(store: &Store, provider: &str, id: &FederatedIdentity) -> (String, bool) {
    match sign_in_federated(store, provider, id, ip()).await.unwrap() {
        FederatedSignIn::SignedIn { user, created } => (user.id, created),
        FederatedSignIn::Disabled => panic!("disabled"),
    }
}

#[tokio::test]
async fn first_sign_in_creates_later_ones_update_and_subjects_identify() {
    let (store, _dir) = fresh().await;
    let (id, created) = signed_in(&store, "corp", &identity("s-1", "alice", &["ops"])).await;
    assert!(created);
    let user = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!(user.username, "alice");
    assert_eq!(user.password_hash, None, "no local password");
    let ident = store.identity_of(&id).await.unwrap().unwrap();
    assert_eq!(
        (ident.provider.as_str(), ident.subject.as_str()),
        ("corp", "s-1")
    );
    assert_eq!(ident.groups, ["ops"]);

    // Same subject, new name, email and groups: same user, refreshed.
    let mut again = identity("s-1", "alice-renamed", &["dev", "ops"]);
    again.display_name = "Alice New".into();
    let (id2, created) = signed_in(&store, "corp", &again).await;
    assert_eq!((id2.as_str(), created), (id.as_str(), false));
    let user = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!(user.username, "alice", "the user name stays");
    assert_eq!(user.display_name, "Alice New");
    let ident = store.identity_of(&id).await.unwrap().unwrap();
    assert_eq!(ident.groups, ["dev", "ops"]);
    assert_eq!(ident.email, "alice-renamed@example.org");

    // The same subject at another provider, and another subject with the same name, are
    // other users with other names.
    let (other, _) = signed_in(&store, "google", &identity("s-1", "alice", &[])).await;
    assert_ne!(other, id);
    assert_eq!(
        store.get_user(&other).await.unwrap().unwrap().username,
        "alice.google"
    );
    let (third, _) = signed_in(&store, "corp", &identity("s-2", "alice", &[])).await;
    assert_eq!(
        store.get_user(&third).await.unwrap().unwrap().username,
        "alice.corp"
    );

    let (entries, _) = store
        .query_log(&LogQuery {
            action: Some("sign-in".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 4, "every sign-in is in the activity log");
    assert!(
        matches!(
            store.verify_log_full(None).await.unwrap(),
            portcullis_app::store::Verification::Verified(cp) if cp.seq == 4
        ),
        "the chain holds"
    );
}

#[tokio::test]
async fn disabled_users_are_refused_and_logged() {
    let (store, _dir) = fresh().await;
    let (id, _) = signed_in(&store, "corp", &identity("s-1", "bob", &[])).await;
    let mut tx = store.begin_write().await.unwrap();
    tx.set_disabled(&id, true).await.unwrap();
    tx.commit().await.unwrap();
    let outcome = sign_in_federated(&store, "corp", &identity("s-1", "bob", &[]), ip())
        .await
        .unwrap();
    assert!(matches!(outcome, FederatedSignIn::Disabled));
    let (entries, _) = store
        .query_log(&LogQuery {
            action: Some("sign-in".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(entries.iter().any(|e| e.content.result == "refused"
        && e.content.detail.contains("account disabled")));
}

#[tokio::test]
async fn group_rules_grant_roles_to_members_of_the_providers_group() {
    let (store, _dir) = fresh().await;
    let admin = admin(&store).await;
    // A group scope must name a group that holds a VM.
    store
        .create_vm(
            &portcullis_app::store::VmFields {
                name: "web-1".into(),
                group: "prod".into(),
                addresses: "198.51.100.5".into(),
                os: "linux".into(),
                exposed_ports: String::new(),
            },
            NewLogEntry::default(),
        )
        .await
        .unwrap();
    let providers = vec!["corp".to_owned(), "google".to_owned()];
    let rule = |provider, group, role, kind, target| GroupRuleInput {
        provider,
        group,
        role,
        scope_kind: kind,
        scope_target: target,
    };
    let ops = add_group_rule(
        &store,
        &admin,
        &providers,
        rule("corp", "ops", "approver", "group", "prod"),
    )
    .await
    .unwrap();
    add_group_rule(
        &store,
        &admin,
        &providers,
        rule("google", "ops", "admin", "all", ""),
    )
    .await
    .unwrap();
    // The same rule twice, an unknown provider, an empty group: refused, nothing stored.
    let dup = add_group_rule(
        &store,
        &admin,
        &providers,
        rule("corp", "ops", "approver", "group", "prod"),
    )
    .await
    .unwrap_err();
    assert!(dup.field_message("group").is_some(), "{dup:?}");
    let bad = add_group_rule(
        &store,
        &admin,
        &providers,
        rule("okta", " ", "boss", "all", ""),
    )
    .await
    .unwrap_err();
    for field in ["provider", "group", "role"] {
        assert!(bad.field_message(field).is_some(), "{field}: {bad:?}");
    }
    assert_eq!(store.list_group_rules().await.unwrap().len(), 2);

    let (id, _) = signed_in(&store, "corp", &identity("s-1", "carol", &["ops", "x"])).await;
    let mut tx = store.begin_write().await.unwrap();
    tx.add_assignment(
        &id,
        &RoleAssignment {
            role: Role::Reader,
            scope: Scope::All,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let roles = effective_roles(&store, &id).await.unwrap();
    assert_eq!(
        roles,
        vec![
            RoleAssignment {
                role: Role::Reader,
                scope: Scope::All
            },
            RoleAssignment {
                role: Role::Approver,
                scope: Scope::Group("prod".into())
            },
        ],
        "direct roles and the corp ops rule, not google's"
    );
    let via = group_roles_of(&store, &id).await.unwrap();
    assert_eq!(via.len(), 1);
    assert_eq!(
        via[0].rule,
        GroupRule {
            provider: "corp".into(),
            group: "ops".into(),
            assignment: RoleAssignment {
                role: Role::Approver,
                scope: Scope::Group("prod".into())
            }
        }
    );

    // API tokens use the groups of the last sign-in only while it is recent.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(token_roles(&store, &id, now).await.unwrap(), roles);
    let week_later = now + TOKEN_GROUPS_FRESH_FOR_MS + 60_000;
    assert_eq!(
        token_roles(&store, &id, week_later).await.unwrap(),
        roles[..1].to_vec(),
        "a week without signing in at the provider: direct roles only"
    );

    // Leaving the group at the provider takes effect at the next sign-in.
    signed_in(&store, "corp", &identity("s-1", "carol", &["x"])).await;
    assert_eq!(effective_roles(&store, &id).await.unwrap().len(), 1);

    // Removing a rule is logged; removing it twice is "not found".
    remove_group_rule(&store, &admin, &ops).await.unwrap();
    assert!(remove_group_rule(&store, &admin, &ops).await.is_err());
    let (entries, _) = store
        .query_log(&LogQuery {
            action: Some("group-rule.remove".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].content.detail.contains("group ops at corp"));
}

#[tokio::test]
async fn user_names_taken_by_local_accounts_are_never_reused() {
    let (store, _dir) = fresh().await;
    store
        .create_user(
            &NewUser {
                username: "dave",
                display_name: "Local Dave",
                password_hash: Some("x"),
                must_change_password: false,
            },
            &[],
            None,
        )
        .await
        .unwrap();
    let (id, _) = signed_in(&store, "corp", &identity("s-9", "Dave", &[])).await;
    let user = store.get_user(&id).await.unwrap().unwrap();
    assert_eq!(user.username, "dave.corp");
    // The store refuses a second link of the same identity outright.
    let again = store
        .create_federated_user(
            "someone-else",
            &portcullis_app::store::FederatedProfile {
                provider: "corp",
                subject: "s-9",
                email: "",
                display_name: "x",
                groups: &[],
            },
            NewLogEntry::default(),
        )
        .await;
    assert!(matches!(again, Err(StoreError::Duplicate)));
}
