//! The permission matrix with roles scoped to everything, to a group and to one VM, through
//! the server functions the portal calls and through the REST API. "Allowed" means a 2xx
//! answer carrying the right data (the VM asked about, the request acted on, exactly the
//! VMs in scope in a list); "refused" means 403 for something the caller may see and 404
//! for something outside their scope, so that names outside it do not leak.

mod common;

use common::rest::{Api, api_token, initiate, scoped_user};
use common::*;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const ROLES: [&str; 4] = ["reader", "requester", "approver", "admin"];

struct Vm {
    id: String,
    name: &'static str,
    group: &'static str,
}

struct Who {
    label: String,
    role: &'static str,
    /// `all`, `group`, or `vm`.
    kind: &'static str,
    browser: Client,
    api: Api,
}

impl Who {
    fn sees(&self, vm: &Vm) -> bool {
        match self.kind {
            "all" => true,
            "group" => vm.group == "prod",
            _ => vm.name == "web-1",
        }
    }

    fn rank(&self) -> usize {
        ROLES.iter().position(|r| *r == self.role).unwrap()
    }

    fn may_request(&self) -> bool {
        self.rank() >= 1
    }

    fn may_approve(&self) -> bool {
        self.rank() >= 2
    }

    fn is_admin(&self) -> bool {
        self.rank() == 3
    }
}

/// The answer a caller must get for an action on `vm`: `ok` when allowed, 404 outside
/// their scope, 403 inside it without the role.
fn expected(who: &Who, vm: &Vm, allowed: bool, ok: StatusCode) -> StatusCode {
    if !who.sees(vm) {
        StatusCode::NOT_FOUND
    } else if allowed {
        ok
    } else {
        StatusCode::FORBIDDEN
    }
}

/// Rita (requester over everything) asks for `port` of `vm` from a source of her own;
/// returns the request id.
async fn rita_asks(app: &TestApp, rita: &Client, vm: &Vm, port: &str, n: &mut u32) -> String {
    *n += 1;
    let source = format!("198.51.{}.{}", 100 + *n / 250, *n % 250 + 1);
    let key = format!("{}:{port}/tcp", vm.id);
    let (s, body) = app
        .call(
            rita,
            "request_access",
            &[
                ("vm_ids[0]", vm.id.as_str()),
                ("ports[0]", key.as_str()),
                ("source_mode", "custom"),
                ("custom_source", source.as_str()),
                ("duration", "30"),
                ("justification", "matrix"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body[0].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn scoped_roles_act_exactly_within_their_scope_in_the_portal_and_the_api() {
    let app = spawn_app().await;
    let admin = browser();
    app.admin_ready(&admin).await;
    let mut vms = Vec::new();
    for (name, group) in [("web-1", "prod"), ("web-2", "prod"), ("db-1", "dev")] {
        let (s, id) = app
            .call(
                &admin,
                "save_vm",
                &[
                    ("id", ""),
                    ("name", name),
                    ("group", group),
                    ("addresses", "198.51.100.5"),
                    ("os", "linux"),
                    ("exposed_ports", "22"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{id}");
        let id = id.as_str().unwrap().to_owned();
        let (s, body) = app
            .call(
                &admin,
                "enable_jit",
                &[
                    ("vm_ids[0]", id.as_str()),
                    ("rules[0][enabled]", "on"),
                    ("rules[0][port]", "22"),
                    ("rules[0][protocol]", "tcp"),
                    ("rules[0][max_minutes]", "60"),
                    ("rules[1][enabled]", "on"),
                    ("rules[1][port]", "3389"),
                    ("rules[1][protocol]", "tcp"),
                    ("rules[1][max_minutes]", "60"),
                    ("rules[1][approval_required]", "on"),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        vms.push(Vm { id, name, group });
    }
    let rita = scoped_user(&app, &admin, "rita", "requester", "all", "").await;
    let mut n = 0;

    let mut people = Vec::new();
    for (kind, target) in [("all", ""), ("group", "prod"), ("vm", "web-1")] {
        for role in ROLES {
            let name = format!("{role}-{kind}");
            let browser = scoped_user(&app, &admin, &name, role, kind, target).await;
            let api = Api::new(&app, &api_token(&app, &browser, "matrix").await);
            people.push(Who {
                label: format!("{role} on {kind} {target}"),
                role,
                kind,
                browser,
                api,
            });
        }
    }
    // One request of Rita's waits on each VM, for the approval queues.
    let mut queued = Vec::new();
    for vm in &vms {
        queued.push(rita_asks(&app, &rita, vm, "3389", &mut n).await);
    }

    let mut checked = 0;
    for who in &people {
        let w = &who.label;
        // Lists hold exactly the VMs in scope, in the portal and the API.
        let in_scope: BTreeSet<&str> = vms.iter().filter(|v| who.sees(v)).map(|v| v.name).collect();
        let (s, page) = app.call(&who.browser, "list_vms", &[("tab", "all")]).await;
        assert_eq!(s, StatusCode::OK, "{w}: {page}");
        let listed: BTreeSet<&str> = page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(listed, in_scope, "{w}: portal list");
        let (s, list) = who.api.get("/api/v1/vms").await;
        assert_eq!(s, StatusCode::OK, "{w}: {list}");
        let listed: BTreeSet<&str> = list["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(listed, in_scope, "{w}: API list");

        // The approval queue holds exactly the waiting requests they may decide.
        let (s, approvals) = who.api.get("/api/v1/requests?view=approvals").await;
        assert_eq!(s, StatusCode::OK, "{w}: {approvals}");
        let waiting: BTreeSet<&str> = approvals["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| queued.iter().any(|q| r["id"] == q.as_str()))
            .map(|r| r["virtualMachines"][0]["name"].as_str().unwrap())
            .collect();
        let expected_queue: BTreeSet<&str> = if who.may_approve() {
            in_scope.clone()
        } else {
            BTreeSet::new()
        };
        assert_eq!(waiting, expected_queue, "{w}: approval queue");

        // The activity log is read over everything only.
        let (s, _) = app.call(&who.browser, "activity", &[]).await;
        let log_status = if who.kind == "all" {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(s, log_status, "{w}: activity page");
        let (s, _) = who.api.get("/api/v1/activity").await;
        assert_eq!(s, log_status, "{w}: activity API");

        for vm in &vms {
            let v = vm.name;
            // See the VM, by id.
            let (s, detail) = app.call(&who.browser, "get_vm", &[("id", &vm.id)]).await;
            assert_eq!(
                s,
                expected(who, vm, true, StatusCode::OK),
                "{w} get_vm {v}: {detail}"
            );
            if s.is_success() {
                assert_eq!(detail["vm"]["name"], v, "{w}");
            }
            let (s, body) = who.api.get(&format!("/api/v1/vms/{}", vm.id)).await;
            assert_eq!(
                s,
                expected(who, vm, true, StatusCode::OK),
                "{w} GET vm {v}: {body}"
            );
            if s.is_success() {
                assert_eq!(body["name"], v, "{w}");
            }

            // Read a request of Rita's by id.
            let rid = rita_asks(&app, &rita, vm, "22", &mut n).await;
            let (s, body) = who.api.get(&format!("/api/v1/requests/{rid}")).await;
            assert_eq!(
                s,
                expected(who, vm, true, StatusCode::OK),
                "{w} GET request on {v}: {body}"
            );
            if s.is_success() {
                assert_eq!(body["virtualMachines"][0]["id"], vm.id.as_str(), "{w}");
            }

            // Request access, in the portal and through the API.
            let key = format!("{}:22/tcp", vm.id);
            let (s, body) = app
                .call(
                    &who.browser,
                    "request_access",
                    &[
                        ("vm_ids[0]", vm.id.as_str()),
                        ("ports[0]", key.as_str()),
                        ("source_mode", "custom"),
                        ("custom_source", "203.0.113.9"),
                        ("duration", "5"),
                        ("justification", "matrix"),
                    ],
                )
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.may_request(), StatusCode::OK),
                "{w} request_access {v}: {body}"
            );
            if s.is_success() {
                let id = body[0].as_str().unwrap();
                let (_, r) = who.api.get(&format!("/api/v1/requests/{id}")).await;
                assert_eq!(r["virtualMachines"][0]["id"], vm.id.as_str(), "{w}");
                assert_eq!(r["requestor"], json!(format!("{}-{}", who.role, who.kind)));
            }
            let (s, body) = who
                .api
                .post(
                    &format!("/api/v1/jitPolicies/{}/initiate", vm.id),
                    &initiate(22, "PT5M"),
                )
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.may_request(), StatusCode::ACCEPTED),
                "{w} initiate {v}: {body}"
            );
            if s.is_success() {
                assert_eq!(body["virtualMachines"][0]["id"], vm.id.as_str(), "{w}");
            }

            // Approve a waiting request of Rita's, in the portal and through the API.
            let pending = rita_asks(&app, &rita, vm, "3389", &mut n).await;
            let (s, body) = app
                .call(
                    &who.browser,
                    "decide_request",
                    &[("id", pending.as_str()), ("decision", "approve")],
                )
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.may_approve(), StatusCode::OK),
                "{w} approve {v}: {body}"
            );
            let pending2 = rita_asks(&app, &rita, vm, "3389", &mut n).await;
            let (s, body) = who
                .api
                .post(&format!("/api/v1/requests/{pending2}/approve"), &json!({}))
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.may_approve(), StatusCode::OK),
                "{w} API approve {v}: {body}"
            );
            if s.is_success() {
                assert_eq!(body["id"], pending2.as_str(), "{w}");
                assert_eq!(body["status"], "Active", "{w}");
            }
            let (_, after) = app.call(&admin, "get_vm", &[("id", &vm.id)]).await;
            let status_of = |id: &str| -> Value {
                after["requests"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["id"] == id)
                    .map(|r| r["status"].clone())
                    .unwrap_or(Value::Null)
            };
            let want = if who.sees(vm) && who.may_approve() {
                "active"
            } else {
                "pending_approval"
            };
            assert_eq!(
                status_of(&pending),
                want,
                "{w} approval on {v} took effect?"
            );

            // Revoke Rita's grant: only an administrator of the VM may end someone else's.
            let active = rita_asks(&app, &rita, vm, "22", &mut n).await;
            let (s, body) = app
                .call(&who.browser, "revoke_request", &[("id", active.as_str())])
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.is_admin(), StatusCode::OK),
                "{w} revoke {v}: {body}"
            );
            let active2 = rita_asks(&app, &rita, vm, "22", &mut n).await;
            let (s, body) = who
                .api
                .post(&format!("/api/v1/requests/{active2}/revoke"), &json!({}))
                .await;
            assert_eq!(
                s,
                expected(who, vm, who.is_admin(), StatusCode::OK),
                "{w} API revoke {v}: {body}"
            );
            if s.is_success() {
                assert_eq!(body["status"], "Revoked", "{w}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 12 * 3, "every role at every scope on every VM");
}
