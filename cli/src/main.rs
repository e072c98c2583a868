//! `portcullis`: just-in-time access from a terminal or a script, through the REST API
//! with a personal API token. Tables for people, `--json` (the API's own JSON) for
//! scripts.

mod client;
mod config;
mod duration;
mod table;

use clap::{Args, Parser, Subcommand};
use client::{Client, enc};
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Just-in-time network access from the command line"
)]
struct Cli {
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Server URL; overrides the one saved by `login`.
    #[arg(long, global = true, env = "PORTCULLIS_URL")]
    url: Option<String>,
    /// API token; overrides the one saved by `login`.
    #[arg(long, global = true, env = "PORTCULLIS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a token against the server and save both for later commands. Without
    /// --token (or with --token -), the token is read from standard input, so that it
    /// stays out of the shell history and the process list.
    Login,
    /// Show who the token belongs to and its roles.
    Whoami,
    /// VMs.
    Vm {
        #[command(subcommand)]
        command: VmCommand,
    },
    /// JIT policies.
    Jit {
        #[command(subcommand)]
        command: JitCommand,
    },
    /// Request access to ports of a VM.
    Request(RequestArgs),
    /// Your access requests (or those waiting for your approval, or on one VM).
    Requests {
        /// Requests waiting for your decision.
        #[arg(long, conflicts_with = "vm")]
        approvals: bool,
        /// All requests on this VM.
        #[arg(long)]
        vm: Option<String>,
    },
    /// End a request now: its ports close.
    Revoke { id: String },
    /// Approve a pending request.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Move a request's end to now + DURATION.
    Extend {
        id: String,
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
    },
    /// The activity log, newest first.
    Log(LogArgs),
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Groups of VMs.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token (printed once): for yourself, or with --user for another user
    /// (administrators over everything). It never outlives the token that creates it.
    Create {
        /// A label to recognise the token by.
        #[arg(long)]
        name: String,
        /// Days until it expires (1 to 365; default 30).
        #[arg(long)]
        days: Option<i64>,
        /// The user the token is for; default yourself.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// A one-time token (valid one hour) for an agent that registers its host as a new
    /// VM in this group, with the command to run on that host.
    EnrollToken { group: String },
}

#[derive(Subcommand)]
enum VmCommand {
    /// The VMs you may see.
    List {
        /// all, configured, recommended, notConfigured or unsupported.
        #[arg(long, default_value = "all")]
        tab: String,
        #[arg(long)]
        search: Option<String>,
    },
    /// One VM.
    Show { vm: String },
    /// Add one VM (administrators of everything or of its group).
    Add(AddVmArgs),
    /// Add many VMs from a CSV file (`-` reads standard input): all of them or, if any
    /// line has a problem, none. The header row names the columns name, group (required),
    /// addresses, os, exposed_ports; at most 5000 VMs.
    Import {
        /// The CSV file, or `-` for standard input.
        file: String,
        /// Only check the file and show what would be added; nothing is stored.
        #[arg(long)]
        dry_run: bool,
    },
    /// A one-time token (valid one hour) for this VM's agent, with the command to run on
    /// the VM.
    EnrollToken { vm: String },
}

#[derive(Args)]
struct AddVmArgs {
    /// Letters, digits and - _ . (at most 64).
    name: String,
    /// The group (like a resource group: roles can be scoped to it).
    #[arg(long)]
    group: String,
    /// An IPv4 or IPv6 address; repeat for several (at most 16).
    #[arg(long = "address")]
    addresses: Vec<String>,
    /// linux, windows or other.
    #[arg(long, default_value = "other")]
    os: String,
    /// A management port known to be exposed (22, 3389, 5985, 5986); repeat for several.
    #[arg(long = "exposed-port")]
    exposed_ports: Vec<i64>,
}

#[derive(Subcommand)]
enum JitCommand {
    /// Put ports of a VM under JIT control (replaces its policy).
    Enable(EnableArgs),
    /// Show a VM's policy.
    Show {
        #[arg(long)]
        vm: String,
    },
    /// Remove a VM's policy; its grants end.
    Disable {
        #[arg(long)]
        vm: String,
    },
}

#[derive(Args)]
struct EnableArgs {
    /// VM name or id.
    #[arg(long)]
    vm: String,
    /// Port number; repeat for several.
    #[arg(long = "port", required = true)]
    ports: Vec<u32>,
    /// tcp, udp or any.
    #[arg(long, default_value = "tcp")]
    protocol: String,
    /// Longest access a request may ask for (5m to 24h).
    #[arg(long, default_value = "3h")]
    max: String,
    /// Allowed source CIDR; repeat for several. Default: the requester chooses.
    #[arg(long = "source")]
    sources: Vec<String>,
    /// Requests wait for an approver.
    #[arg(long)]
    approval: bool,
    /// Requests must give a justification.
    #[arg(long)]
    justification_required: bool,
}

#[derive(Args)]
struct RequestArgs {
    /// VM name or id.
    #[arg(long)]
    vm: String,
    /// Port number; repeat for several.
    #[arg(long = "port", required = true)]
    ports: Vec<u32>,
    /// How long, e.g. 30m, 1h, 1h30m.
    #[arg(long = "for", value_name = "DURATION")]
    duration: String,
    /// Source address or CIDR to open for; default: your address as the server sees it.
    #[arg(long)]
    source: Option<String>,
    #[arg(long, default_value = "")]
    justification: String,
    /// A later start: UTC as YYYY-MM-DDTHH:MM, or RFC 3339 with an offset. The request is
    /// decided ahead and opens then; default: now.
    #[arg(long)]
    start: Option<String>,
}

#[derive(Args)]
struct LogArgs {
    /// VM names starting with this (case ignored); in double quotes ('"web-1"'), that
    /// name only.
    #[arg(long)]
    vm: Option<String>,
    /// User names starting with this (case ignored); in double quotes ('"alice"'), that
    /// name only.
    #[arg(long)]
    actor: Option<String>,
    /// Exactly this action, e.g. request, grant.revoke.
    #[arg(long)]
    action: Option<String>,
    /// UTC, YYYY-MM-DD or YYYY-MM-DDTHH:MM.
    #[arg(long)]
    from: Option<String>,
    /// UTC, YYYY-MM-DD (inclusive) or YYYY-MM-DDTHH:MM.
    #[arg(long)]
    to: Option<String>,
    /// How many entries.
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// The client from flags, environment or the saved login, in that order.
fn client(cli: &Cli) -> Result<Client, String> {
    let saved = config::load()?;
    let url = cli
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.url.clone()))
        .ok_or("not logged in: run `portcullis login --url URL --token TOKEN`")?;
    let token = cli
        .token
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.token.clone()))
        .ok_or("not logged in: run `portcullis login --url URL --token TOKEN`")?;
    Client::new(&url, &token)
}

/// The token for `login` when it is not on the command line: one line of standard input.
fn token_from_stdin() -> Result<String, String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("API token: ");
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the token: {e}"))?;
    let token = line.trim().to_owned();
    if token.is_empty() {
        return Err("no token given: pass --token TOKEN or type it on standard input".into());
    }
    Ok(token)
}

async fn run(mut cli: Cli) -> Result<String, String> {
    if matches!(cli.command, Command::Login) && cli.token.as_deref().is_none_or(|t| t == "-") {
        cli.token = Some(token_from_stdin()?);
    }
    let api = client(&cli)?;
    let json = cli.json;
    match &cli.command {
        Command::Login => {
            let me = api.get("/api/v1/me").await?;
            let path = config::save(&config::Config {
                url: api.url.clone(),
                token: api.token.clone(),
            })?;
            if json {
                return Ok(pretty(&me));
            }
            Ok(format!(
                "Logged in to {} as {}; saved to {}\n",
                api.url,
                s(&me["username"]),
                path.display()
            ))
        }
        Command::Whoami => {
            let me = api.get("/api/v1/me").await?;
            if json {
                return Ok(pretty(&me));
            }
            let roles: Vec<String> = me["roles"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let target = s(&r["target"]);
                    if target.is_empty() {
                        format!("{} on {}", s(&r["role"]), s(&r["scope"]))
                    } else {
                        format!("{} on {} {}", s(&r["role"]), s(&r["scope"]), target)
                    }
                })
                .collect();
            Ok(format!(
                "{} ({}) from {}\n",
                s(&me["username"]),
                roles.join(", "),
                s(&me["clientIp"])
            ))
        }
        Command::Vm { command } => vm(&api, command, json).await,
        Command::Token {
            command: TokenCommand::Create { name, days, user },
        } => {
            let mut body = json!({ "name": name });
            if let Some(days) = days {
                body["expiresInDays"] = json!(days);
            }
            if let Some(user) = user {
                body["user"] = json!(user);
            }
            let made = api.post("/api/v1/tokens", &body).await?;
            if json {
                return Ok(pretty(&made));
            }
            // The token alone on standard output, for `TOKEN=$(portcullis token create …)`.
            eprintln!(
                "API token \"{}\" for {}, expires {}; shown this once.",
                s(&made["info"]["name"]),
                s(&made["owner"]),
                s(&made["info"]["expiresUtc"])
            );
            Ok(format!("{}\n", s(&made["token"])))
        }
        Command::Group {
            command: GroupCommand::EnrollToken { group },
        } => {
            let path = format!("/api/v1/groups/{}/enrollmentTokens", enc(group));
            enrollment(&api, &path, json).await
        }
        Command::Jit { command } => jit(&api, command, json).await,
        Command::Request(args) => request(&api, args, json).await,
        Command::Requests { approvals, vm } => {
            let path = match (approvals, vm) {
                (true, _) => "/api/v1/requests?view=approvals".to_owned(),
                (false, Some(vm)) => format!("/api/v1/requests?view=vm&vm={}", enc(vm)),
                (false, None) => "/api/v1/requests".to_owned(),
            };
            let list = api.get(&path).await?;
            if json {
                return Ok(pretty(&list));
            }
            Ok(requests_table(
                list["value"].as_array().map_or(&[][..], |v| v),
            ))
        }
        Command::Revoke { id } => {
            decided(
                &api,
                json,
                &format!("/api/v1/requests/{}/revoke", enc(id)),
                &json!({}),
                "Revoked",
            )
            .await
        }
        Command::Approve { id, comment } => {
            let body = json!({ "comment": comment });
            decided(
                &api,
                json,
                &format!("/api/v1/requests/{}/approve", enc(id)),
                &body,
                "Approved",
            )
            .await
        }
        Command::Deny { id, comment } => {
            let body = json!({ "comment": comment });
            decided(
                &api,
                json,
                &format!("/api/v1/requests/{}/deny", enc(id)),
                &body,
                "Denied",
            )
            .await
        }
        Command::Extend { id, duration } => {
            let body = json!({ "duration": duration::iso(duration::parse(duration)?) });
            decided(
                &api,
                json,
                &format!("/api/v1/requests/{}/extend", enc(id)),
                &body,
                "Extended",
            )
            .await
        }
        Command::Log(args) => log(&api, args, json).await,
    }
}

async fn decided(
    api: &Client,
    json: bool,
    path: &str,
    body: &Value,
    verb: &str,
) -> Result<String, String> {
    let r = api.post(path, body).await?;
    if json {
        return Ok(pretty(&r));
    }
    Ok(format!(
        "{verb} request {}: {} (ends {})\n",
        s(&r["id"]),
        s(&r["status"]),
        s(&r["endTimeUtc"])
    ))
}

async fn vm(api: &Client, command: &VmCommand, json: bool) -> Result<String, String> {
    match command {
        VmCommand::List { tab, search } => {
            let mut path = format!("/api/v1/vms?pageSize=500&tab={}", enc(tab));
            if let Some(q) = search {
                path.push_str(&format!("&search={}", enc(q)));
            }
            let list = api.get(&path).await?;
            if json {
                return Ok(pretty(&list));
            }
            let rows: Vec<Vec<String>> = list["value"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let grants = v["activeGrants"].as_array().map_or(0, Vec::len);
                    vec![
                        s(&v["name"]),
                        s(&v["group"]),
                        s(&v["os"]),
                        if v["jitPolicyConfigured"] == true {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                        grants.to_string(),
                        s(&v["agentStatus"]),
                    ]
                })
                .collect();
            Ok(table::render(
                &["NAME", "GROUP", "OS", "JIT", "GRANTS", "AGENT"],
                &rows,
            ))
        }
        VmCommand::Show { vm } => {
            let v = api.get(&format!("/api/v1/vms/{}", enc(vm))).await?;
            Ok(pretty(&v))
        }
        VmCommand::EnrollToken { vm } => {
            let path = format!("/api/v1/vms/{}/enrollmentTokens", enc(vm));
            enrollment(api, &path, json).await
        }
        VmCommand::Add(a) => {
            let body = json!({
                "name": a.name,
                "group": a.group,
                "addresses": a.addresses,
                "os": a.os,
                "exposedPorts": a.exposed_ports,
            });
            let v = api.post("/api/v1/vms", &body).await?;
            if json {
                return Ok(pretty(&v));
            }
            Ok(format!(
                "Added VM {} (id {}) to group {}.\n",
                s(&v["name"]),
                s(&v["id"]),
                s(&v["group"])
            ))
        }
        VmCommand::Import { file, dry_run } => {
            let csv = read_input(file)?;
            let done = api
                .post(
                    "/api/v1/vms/import",
                    &json!({ "csv": csv, "dryRun": dry_run }),
                )
                .await?;
            if json {
                return Ok(pretty(&done));
            }
            let rows: Vec<Vec<String>> = done["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let list = |v: &Value| {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .map(s)
                            .collect::<Vec<_>>()
                            .join(" ")
                    };
                    vec![
                        s(&r["line"]),
                        s(&r["name"]),
                        s(&r["group"]),
                        list(&r["addresses"]),
                        s(&r["os"]),
                        list(&r["exposedPorts"]),
                    ]
                })
                .collect();
            let mut out = table::render(
                &["LINE", "NAME", "GROUP", "ADDRESSES", "OS", "EXPOSED PORTS"],
                &rows,
            );
            let n = rows.len();
            let plural = if n == 1 { "" } else { "s" };
            if *dry_run {
                out.push_str(&format!(
                    "Dry run: {n} VM{plural} would be imported; nothing was stored.\n"
                ));
            } else {
                out.push_str(&format!("Imported {} VM{plural}.\n", s(&done["imported"])));
            }
            Ok(out)
        }
    }
}

/// The text of `file`, or of standard input for `-`.
fn read_input(file: &str) -> Result<String, String> {
    use std::io::Read;
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))
}

/// Makes an enrollment token; prints the token, then the command to run on the host
/// (two lines a script can read), with what it is for on standard error.
async fn enrollment(api: &Client, path: &str, json: bool) -> Result<String, String> {
    let made = api.post(path, &json!({})).await?;
    if json {
        return Ok(pretty(&made));
    }
    eprintln!(
        "Enrollment token for {}, valid until {}; shown this once.",
        s(&made["target"]),
        s(&made["expiresUtc"])
    );
    if let Some(warning) = made["warning"].as_str() {
        eprintln!("warning: {warning}");
    }
    Ok(format!("{}\n{}\n", s(&made["token"]), s(&made["command"])))
}

fn policy_table(p: &Value) -> String {
    let rows: Vec<Vec<String>> = p["virtualMachines"][0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let sources = match r["allowedSourceAddressPrefixes"].as_array() {
                Some(list) => list.iter().map(s).collect::<Vec<_>>().join(","),
                None => s(&r["allowedSourceAddressPrefix"]),
            };
            vec![
                s(&r["number"]),
                s(&r["protocol"]),
                sources,
                s(&r["maxRequestAccessDuration"]),
                if r["approvalRequired"] == true {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ]
        })
        .collect();
    format!(
        "{}:\n{}",
        s(&p["name"]),
        table::render(&["PORT", "PROTOCOL", "SOURCES", "MAX", "APPROVAL"], &rows)
    )
}

async fn jit(api: &Client, command: &JitCommand, json: bool) -> Result<String, String> {
    match command {
        JitCommand::Enable(a) => {
            let max = duration::iso(duration::parse(&a.max)?);
            let protocol = match a.protocol.to_ascii_lowercase().as_str() {
                "any" | "*" => "*".to_owned(),
                other => other.to_ascii_uppercase(),
            };
            let ports: Vec<Value> = a
                .ports
                .iter()
                .map(|port| {
                    let mut rule = json!({
                        "number": port,
                        "protocol": protocol,
                        "maxRequestAccessDuration": max,
                        "approvalRequired": a.approval,
                        "justificationRequired": a.justification_required,
                    });
                    if a.sources.is_empty() {
                        rule["allowedSourceAddressPrefix"] = json!("*");
                    } else {
                        rule["allowedSourceAddressPrefixes"] = json!(a.sources);
                    }
                    rule
                })
                .collect();
            let body = json!({ "virtualMachines": [{ "ports": ports }] });
            let p = api
                .put(&format!("/api/v1/jitPolicies/{}", enc(&a.vm)), &body)
                .await?;
            if json {
                return Ok(pretty(&p));
            }
            Ok(format!("JIT enabled on {}", policy_table(&p)))
        }
        JitCommand::Show { vm } => {
            let p = api.get(&format!("/api/v1/jitPolicies/{}", enc(vm))).await?;
            if json {
                return Ok(pretty(&p));
            }
            Ok(policy_table(&p))
        }
        JitCommand::Disable { vm } => {
            api.delete(&format!("/api/v1/jitPolicies/{}", enc(vm)))
                .await?;
            if json {
                return Ok("{}\n".into());
            }
            Ok(format!("JIT disabled on {vm}\n"))
        }
    }
}

async fn request(api: &Client, a: &RequestArgs, json: bool) -> Result<String, String> {
    let duration = duration::iso(duration::parse(&a.duration)?);
    let ports: Vec<Value> = a
        .ports
        .iter()
        .map(|port| {
            let mut p = json!({ "number": port, "duration": duration });
            if let Some(src) = &a.source {
                p["allowedSourceAddressPrefix"] = json!(src);
            }
            p
        })
        .collect();
    let mut body = json!({
        "virtualMachines": [{ "ports": ports }],
        "justification": a.justification,
    });
    if let Some(start) = &a.start {
        body["startTimeUtc"] = json!(start);
    }
    let r = api
        .post(
            &format!("/api/v1/jitPolicies/{}/initiate", enc(&a.vm)),
            &body,
        )
        .await?;
    if json {
        return Ok(pretty(&r));
    }
    Ok(requests_table(std::slice::from_ref(&r)))
}

fn requests_table(list: &[Value]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            let vm = &r["virtualMachines"][0];
            let ports: Vec<String> = vm["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}/{} {}",
                        s(&p["number"]),
                        s(&p["protocol"]),
                        s(&p["status"])
                    )
                })
                .collect();
            let source = s(&vm["ports"][0]["allowedSourceAddressPrefix"]);
            vec![
                s(&r["id"]),
                s(&vm["name"]),
                ports.join(", "),
                source,
                s(&r["status"]),
                s(&r["startTimeUtc"]),
                s(&r["endTimeUtc"]),
                s(&r["requestor"]),
            ]
        })
        .collect();
    table::render(
        &[
            "ID",
            "VM",
            "PORTS",
            "SOURCE",
            "STATUS",
            "STARTS (UTC)",
            "ENDS (UTC)",
            "REQUESTOR",
        ],
        &rows,
    )
}

async fn log(api: &Client, a: &LogArgs, json: bool) -> Result<String, String> {
    let mut path = format!("/api/v1/activity?pageSize={}", a.limit.clamp(1, 500));
    for (key, value) in [
        ("vm", &a.vm),
        ("actor", &a.actor),
        ("action", &a.action),
        ("from", &a.from),
        ("to", &a.to),
    ] {
        if let Some(v) = value {
            path.push_str(&format!("&{key}={}", enc(v)));
        }
    }
    let page = api.get(&path).await?;
    if json {
        return Ok(pretty(&page));
    }
    let rows: Vec<Vec<String>> = page["value"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                s(&e["timeUtc"]),
                s(&e["actor"]),
                s(&e["action"]),
                s(&e["vm"]),
                s(&e["ports"]),
                s(&e["source"]),
                s(&e["result"]),
                s(&e["detail"]),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "TIME (UTC)",
            "ACTOR",
            "ACTION",
            "VM",
            "PORTS",
            "SOURCE",
            "RESULT",
            "DETAIL",
        ],
        &rows,
    );
    out.push_str(&format!(
        "{} of {} entries. {}\n",
        rows.len(),
        s(&page["total"]),
        s(&page["chain"]["message"])
    ));
    Ok(out)
}
