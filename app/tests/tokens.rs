//! API tokens through the service, on a fresh database (SQLite, or PostgreSQL when
//! `PORTCULLIS_TEST_POSTGRES` names a server): only a hash is stored, the
//! token authenticates as its owner with the owner's current roles, and revocation,
//! expiry and disabling refuse it.
#![cfg(feature = "ssr")]

use portcullis_app::domain::secret::hash_secret;
use portcullis_app::domain::{Role, RoleAssignment, Scope};
use portcullis_app::error::AppError;
use portcullis_app::services::Actor;
use portcullis_app::services::tokens::{self, TokenRefusal, authenticate};
use portcullis_app::store::{NewUser, Store};
use std::net::IpAddr;

async fn fresh() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "tokens")
        .await
        .unwrap();
    (Store::connect(&url).await.unwrap(), dir)
}

const IP: &str = "198.51.100.9";

async fn actor(store: &Store, name: &str, role: Role) -> Actor {
    let user = store
        .create_user(
            &NewUser {
                username: name,
                display_name: name,
                password_hash: Some("$argon2id$x"),
                must_change_password: false,
            },
            &[RoleAssignment {
                role,
                scope: Scope::All,
            }],
            None,
        )
        .await
        .unwrap();
    Actor {
        user_id: user.id,
        username: user.username,
        roles: vec![],
        ip: IP.parse().unwrap(),
    }
}

#[tokio::test]
async fn a_token_is_stored_hashed_and_authenticates_its_owner() {
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Requester).await;
    let created = tokens::create(&store, &alice, "deploy", "7").await.unwrap();
    let secret = created.token.rsplit('_').next().unwrap();
    let stored = store
        .get_api_token(&created.info.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.token_hash, hash_secret(secret));
    assert!(!stored.token_hash.contains(secret));
    assert_eq!(stored.expires_at - stored.created_at, 7 * 86_400_000);

    let ip: IpAddr = IP.parse().unwrap();
    let who = authenticate(&store, Some(&created.token), ip)
        .await
        .unwrap();
    assert_eq!(who.username, "alice");
    assert_eq!(who.roles[0].role, Role::Requester);
    assert_eq!(who.ip, ip);
    let listed = tokens::list(&store, &alice).await.unwrap();
    assert!(listed[0].last_used_at.is_some(), "use is recorded");

    // The last character changed (to one it is not).
    let (kept, last) = created.token.split_at(created.token.len() - 1);
    let tampered = format!("{kept}{}", if last == "X" { "Y" } else { "X" });
    assert_eq!(
        authenticate(&store, Some(&tampered), ip).await.unwrap_err(),
        TokenRefusal::Unknown
    );
    assert_eq!(
        authenticate(&store, None, ip).await.unwrap_err(),
        TokenRefusal::Missing
    );
    assert_eq!(
        authenticate(&store, Some("hello"), ip).await.unwrap_err(),
        TokenRefusal::Malformed
    );

    store
        .set_api_token_expiry(&created.info.id, 1)
        .await
        .unwrap();
    assert_eq!(
        authenticate(&store, Some(&created.token), ip)
            .await
            .unwrap_err(),
        TokenRefusal::Expired
    );
}

#[tokio::test]
async fn only_the_owner_revokes_and_a_revoked_token_is_refused() {
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Reader).await;
    let bob = actor(&store, "bob", Role::Admin).await;
    let t = tokens::create(&store, &alice, "laptop", "").await.unwrap();
    assert_eq!(
        tokens::revoke(&store, &bob, &t.info.id).await,
        Err(AppError::NotFound("The API token".into()))
    );
    tokens::revoke(&store, &alice, &t.info.id).await.unwrap();
    assert!(matches!(
        tokens::revoke(&store, &alice, &t.info.id).await,
        Err(AppError::Conflict(_))
    ));
    assert_eq!(
        authenticate(&store, Some(&t.token), IP.parse().unwrap())
            .await
            .unwrap_err(),
        TokenRefusal::Revoked
    );
    let (log, _) = store
        .query_log(&portcullis_app::store::LogQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.content.action.as_str()).collect();
    assert_eq!(actions, ["token.revoke", "token.create"]);

    let e = tokens::create(&store, &alice, " ", "0").await.unwrap_err();
    assert!(e.field_message("name").is_some() && e.field_message("expires_days").is_some());
}

#[tokio::test]
async fn a_disabled_owner_cannot_use_their_token() {
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Reader).await;
    let t = tokens::create(&store, &alice, "ci", "30").await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.set_disabled(&alice.user_id, true).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        authenticate(&store, Some(&t.token), IP.parse().unwrap())
            .await
            .unwrap_err(),
        TokenRefusal::Disabled
    );
}

#[tokio::test]
async fn a_user_has_at_most_fifty_live_tokens() {
    let (store, _dir) = fresh().await;
    let bob = actor(&store, "bob", Role::Reader).await;
    let mut first = None;
    for i in 0..tokens::MAX_LIVE_TOKENS {
        let t = tokens::create(&store, &bob, &format!("t{i}"), "1")
            .await
            .unwrap();
        first.get_or_insert(t.info.id);
    }
    let refused = tokens::create(&store, &bob, "one more", "1")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AppError::Conflict(m) if m.contains("revoke one")),
        "{refused:?}"
    );
    assert_eq!(
        tokens::list(&store, &bob).await.unwrap().len(),
        tokens::MAX_LIVE_TOKENS as usize,
        "the refused one was not stored"
    );
    // Others are not limited by bob's tokens; a revoked token makes room.
    let carol = actor(&store, "carol", Role::Reader).await;
    tokens::create(&store, &carol, "hers", "1").await.unwrap();
    tokens::revoke(&store, &bob, &first.unwrap()).await.unwrap();
    tokens::create(&store, &bob, "one more", "1").await.unwrap();
}

#[tokio::test]
async fn an_administrator_of_everything_lists_and_revokes_every_users_live_tokens() {
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Reader).await;
    let carol = actor(&store, "carol", Role::Requester).await;
    let mut root = actor(&store, "root", Role::Admin).await;
    root.roles = vec![RoleAssignment {
        role: Role::Admin,
        scope: Scope::All,
    }];
    let mut group_admin = actor(&store, "ga", Role::Admin).await;
    group_admin.roles = vec![RoleAssignment {
        role: Role::Admin,
        scope: Scope::Group("prod".into()),
    }];

    let live = tokens::create(&store, &alice, "laptop", "").await.unwrap();
    let gone = tokens::create(&store, &alice, "old", "").await.unwrap();
    tokens::revoke(&store, &alice, &gone.info.id).await.unwrap();
    let expired = tokens::create(&store, &carol, "ci", "").await.unwrap();
    store
        .set_api_token_expiry(&expired.info.id, 1)
        .await
        .unwrap();

    // Only tokens in force, with their owner.
    let all = tokens::list_all_live(&store, &root).await.unwrap();
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|t| (t.username.as_str(), t.token.name.as_str()))
        .collect();
    assert_eq!(seen, [("alice", "laptop")]);

    // An administrator of one group is not an administrator of accounts.
    assert_eq!(
        tokens::list_all_live(&store, &group_admin).await,
        Err(AppError::Forbidden)
    );
    assert_eq!(
        tokens::revoke(&store, &group_admin, &live.info.id).await,
        Err(AppError::NotFound("The API token".into()))
    );
    assert_eq!(
        tokens::revoke(&store, &carol, &live.info.id).await,
        Err(AppError::NotFound("The API token".into()))
    );
    authenticate(&store, Some(&live.token), IP.parse().unwrap())
        .await
        .unwrap();

    tokens::revoke(&store, &root, &live.info.id).await.unwrap();
    assert_eq!(
        authenticate(&store, Some(&live.token), IP.parse().unwrap())
            .await
            .unwrap_err(),
        TokenRefusal::Revoked
    );
    assert!(
        tokens::list_all_live(&store, &root)
            .await
            .unwrap()
            .is_empty()
    );
    // Still the owner's token: it shows as revoked in their own list.
    let mine = tokens::list(&store, &alice).await.unwrap();
    assert!(
        mine.iter()
            .find(|t| t.id == live.info.id)
            .is_some_and(|t| t.revoked_at.is_some())
    );
    let (log, _) = store
        .query_log(&portcullis_app::store::LogQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let last = &log[0].content;
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("root", "token.revoke")
    );
    assert!(last.detail.ends_with("of user alice"), "{}", last.detail);
}

/// The host console makes tokens for a named user, never for itself; a token made with a
/// token is capped at that token's end; only an administrator over everything makes
/// another user's token, and never a disabled user's.
#[tokio::test]
async fn tokens_for_another_user_need_the_right_and_an_enabled_owner() {
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Requester).await;
    let bob = actor(&store, "bob", Role::Requester).await;
    let host = Actor::host_console();

    let made = tokens::create_for(&store, &host, Some("Alice"), "ops", "3", None)
        .await
        .unwrap();
    let who = authenticate(&store, Some(&made.token), IP.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(who.username, "alice");
    match tokens::create_for(&store, &host, None, "ops", "3", None).await {
        Err(AppError::Validation(e)) => assert_eq!(e.0[0].field, "user"),
        other => panic!("{other:?}"),
    }
    match tokens::create_for(&store, &host, Some("nobody"), "ops", "3", None).await {
        Err(AppError::Validation(e)) => assert!(e.0[0].message.contains("nobody")),
        other => panic!("{other:?}"),
    }

    // A requester (roles as authenticate gives them) may not make bob's token.
    let alice_now = authenticate(&store, Some(&made.token), IP.parse().unwrap())
        .await
        .unwrap();
    assert!(matches!(
        tokens::create_for(&store, &alice_now, Some("bob"), "x", "3", None).await,
        Err(AppError::Forbidden)
    ));
    // Their own, capped at the end of the token they call with.
    let cap = store.now_ms() + 3_600_000;
    let own = tokens::create_for(&store, &alice_now, Some("alice"), "x", "30", Some(cap))
        .await
        .unwrap();
    assert_eq!(own.info.expires_at, cap);

    let mut tx = store.begin_write().await.unwrap();
    tx.set_disabled(&bob.user_id, true).await.unwrap();
    tx.commit().await.unwrap();
    match tokens::create_for(&store, &host, Some("bob"), "ops", "3", None).await {
        Err(AppError::Validation(e)) => assert!(e.0[0].message.contains("disabled")),
        other => panic!("{other:?}"),
    }
    assert_eq!(tokens::list(&store, &alice).await.unwrap().len(), 2);
}

/// `create-admin`: a new administrator, or an existing account enabled, made admin over
/// everything, given a one-time password; logged from the host console; never for a
/// portal user.
#[tokio::test]
async fn recovering_an_administrator_is_for_the_host_console_only() {
    use portcullis_app::services::users::recover_admin;
    let (store, _dir) = fresh().await;
    let alice = actor(&store, "alice", Role::Admin).await;
    let admin_alice = Actor {
        roles: vec![RoleAssignment {
            role: Role::Admin,
            scope: Scope::All,
        }],
        ..alice.clone()
    };
    assert!(matches!(
        recover_admin(&store, &admin_alice, "mallory").await,
        Err(AppError::Forbidden)
    ));
    let host = Actor::host_console();
    let made = recover_admin(&store, &host, "Carol").await.unwrap();
    assert!(made.created);
    assert_eq!(made.username, "carol");
    let carol = store.find_user_by_username("carol").await.unwrap().unwrap();
    assert!(carol.must_change_password);

    let bob = actor(&store, "bob", Role::Reader).await;
    let mut tx = store.begin_write().await.unwrap();
    tx.set_disabled(&bob.user_id, true).await.unwrap();
    tx.commit().await.unwrap();
    let again = recover_admin(&store, &host, "bob").await.unwrap();
    assert!(!again.created);
    let bob_now = store.get_user(&bob.user_id).await.unwrap().unwrap();
    assert!(!bob_now.disabled && bob_now.must_change_password);
    assert!(bob_now.session_epoch > 0, "earlier sessions end");
    let roles: Vec<_> = store
        .assignments_of(&bob.user_id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.assignment)
        .collect();
    assert!(roles.contains(&RoleAssignment {
        role: Role::Admin,
        scope: Scope::All
    }));

    let (log, _) = store
        .query_log(&portcullis_app::store::LogQuery {
            before_seq: None,
            vm: None,
            vm_exact: false,
            actor: Some("host console".into()),
            actor_exact: true,
            action: None,
            from_ms: None,
            to_ms: None,
            offset: 0,
            limit: 10,
        })
        .await
        .unwrap();
    let details: Vec<_> = log
        .iter()
        .map(|e| {
            let c = &e.content;
            (c.action.as_str(), c.client_ip.as_str(), c.detail.as_str())
        })
        .collect();
    assert!(
        details.iter().any(|(a, ip, d)| *a == "user.create"
            && *ip == "local console"
            && d.starts_with("carol as admin on all")),
        "{details:?}"
    );
    assert!(
        details.iter().any(|(a, ip, d)| *a == "user.recover"
            && *ip == "local console"
            && d.contains("account enabled")
            && d.contains("admin on all added")),
        "{details:?}"
    );
}

#[tokio::test]
async fn a_user_names_each_token_in_force_differently() {
    let (store, _dir) = fresh().await;
    let bob = actor(&store, "bob", Role::Reader).await;
    let first = tokens::create(&store, &bob, "deploy", "7").await.unwrap();
    let refused = tokens::create(&store, &bob, " deploy ", "7")
        .await
        .unwrap_err();
    assert_eq!(
        refused.field_message("name").as_deref(),
        Some(
            "You already have a token named \"deploy\"; choose another name or revoke that one first."
        ),
        "{refused:?}"
    );
    assert_eq!(tokens::list(&store, &bob).await.unwrap().len(), 1);
    // Another user, or another name, is free; the database refuses a duplicate too.
    let carol = actor(&store, "carol", Role::Reader).await;
    tokens::create(&store, &carol, "deploy", "7").await.unwrap();
    tokens::create(&store, &bob, "Deploy 2", "7").await.unwrap();
    // A revoked token gives its name back.
    tokens::revoke(&store, &bob, &first.info.id).await.unwrap();
    let again = tokens::create(&store, &bob, "deploy", "7").await.unwrap();
    assert_eq!(again.info.name, "deploy");
    // An administrator creating one for bob hears whose name is taken.
    let admin = actor(&store, "root", Role::Admin).await;
    let admin = Actor {
        roles: vec![RoleAssignment {
            role: Role::Admin,
            scope: Scope::All,
        }],
        ..admin
    };
    let refused = tokens::create_for(&store, &admin, Some("bob"), "deploy", "7", None)
        .await
        .unwrap_err();
    assert!(
        refused
            .field_message("name")
            .is_some_and(|m| m.starts_with("bob already has a token named \"deploy\"")),
        "{refused:?}"
    );
}

/// A database from before names were unique may hold several unrevoked tokens of one
/// user under one name: the migration keeps the oldest's name, appends the prefix to the
/// others, and leaves revoked tokens and other users alone.
#[tokio::test]
async fn the_migration_to_unique_names_renames_duplicates_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let url = portcullis_app::store::test_support::fresh_database_url(dir.path(), "tokens")
        .await
        .unwrap();
    let store = Store::connect(&url).await.unwrap();
    let bob = actor(&store, "bob", Role::Reader).await;
    let carol = actor(&store, "carol", Role::Reader).await;
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    // Back to before migration 16, as an older version left it.
    for sql in [
        "DROP INDEX api_tokens_live_name",
        "DELETE FROM _sqlx_migrations WHERE version = 16",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    let rows: [(&str, &Actor, i64, Option<i64>); 5] = [
        ("aaaa0001", &bob, 1_000, None),
        ("aaaa0002", &bob, 2_000, None),
        ("aaaa0003", &bob, 3_000, None),
        ("aaaa0004", &bob, 500, Some(900)),
        ("aaaa0005", &carol, 100, None),
    ];
    for (id, owner, created_at, revoked_at) in rows {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, created_at, \
             expires_at, revoked_at) VALUES ($1, $2, 'ci', $3, 'x', $4, $5, $6)",
        )
        .bind(id)
        .bind(&owner.user_id)
        .bind(format!("pcu_{id}"))
        .bind(created_at)
        .bind(created_at + 86_400_000)
        .bind(revoked_at)
        .execute(&db)
        .await
        .unwrap();
    }
    db.close().await;
    drop(store);

    let upgraded = Store::connect(&url).await.unwrap();
    let mut names = Vec::new();
    for id in ["aaaa0001", "aaaa0002", "aaaa0003", "aaaa0004", "aaaa0005"] {
        names.push(upgraded.get_api_token(id).await.unwrap().unwrap().name);
    }
    assert_eq!(
        names,
        ["ci", "ci (pcu_aaaa0002)", "ci (pcu_aaaa0003)", "ci", "ci"]
    );
    // And from now on the database itself refuses a second "ci" in force for bob.
    let db = sqlx::AnyPool::connect(&url).await.unwrap();
    let duplicate = sqlx::query(
        "INSERT INTO api_tokens (id, user_id, name, prefix, token_hash, created_at, expires_at) \
         VALUES ('aaaa0006', $1, 'ci', 'pcu_aaaa0006', 'x', 1, 2)",
    )
    .bind(&bob.user_id)
    .execute(&db)
    .await;
    assert!(duplicate.is_err(), "the unique index is in place");
    db.close().await;
}
