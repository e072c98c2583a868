//! `portcullis-server`: serves the portal, and the commands an operator runs on the host
//! (backup, activity-log verification, administrator recovery, API and enrollment
//! tokens). Host-side commands have the database and the activity log's key, so they act
//! as a trusted local operator, but through the same services as the portal: input is
//! checked the same way and every change is logged, as coming from the host console.

use clap::{Args, Parser, Subcommand};
use portcullis_app::services::Actor;
use portcullis_app::store::{Store, SystemClock};
use portcullis_server::config::{AuditKeySource, Config, LogFormat};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's allocator: each idle agent holds a connection whose
/// buffers come and go, and glibc kept much of what they freed (measured with 10,000 idle
/// agents: 23 KiB resident per agent on PostgreSQL and 29 on SQLite with glibc, 16 and 20
/// with jemalloc, which returns freed pages to the system).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "portcullis-server",
    version,
    about = "Portcullis: just-in-time access to management ports",
    after_help = "Settings come from the configuration file and PORTCULLIS_* variables; \
                  see README.md and docs/operations.md."
)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(
        long,
        short = 'c',
        env = "PORTCULLIS_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the portal (what runs without a command).
    Serve,
    /// Verify the whole activity log: exit 0 when intact, 1 when broken, 2 when unreadable.
    VerifyLog,
    /// Write a consistent copy of the SQLite database to FILE while the server runs.
    Backup {
        /// Where to write the copy; must not exist yet.
        file: PathBuf,
    },
    /// Create a local administrator, or restore an existing account as one, with a
    /// one-time password that must be changed at first sign-in.
    CreateAdmin {
        /// The account's user name.
        name: String,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Make a one-time agent enrollment token (valid one hour) and print it with the
    /// install command.
    EnrollToken(EnrollArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user; prints the token (shown once) on standard output.
    Create {
        /// The user the token acts as.
        #[arg(long, value_name = "NAME")]
        user: String,
        /// Days until it expires (as in the portal: 1 to 365, default 30).
        #[arg(long, value_name = "N")]
        days: Option<String>,
        /// A label to recognise the token by.
        #[arg(long, value_name = "LABEL", default_value = "host console")]
        name: String,
    },
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct EnrollArgs {
    /// For the agent of this existing VM (name or id).
    #[arg(long, value_name = "NAME")]
    vm: Option<String>,
    /// For an agent that registers its host as a new VM in this group.
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
}

/// Where the Debian package installs the configuration; read when no `--config` is given.
const PACKAGED_CONFIG: &str = "/etc/portcullis/portcullis.toml";

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    // On a packaged host an operator types `portcullis-server create-admin NAME`; without
    // the package's configuration the command would open (and create) a database in the
    // current directory and report success on a copy nobody serves.
    // (`serve` is started with --config by its unit, and without one in development.)
    let host_command = !matches!(command, Command::Serve);
    let config_path = cli.config.or_else(|| {
        let packaged = Path::new(PACKAGED_CONFIG);
        (host_command && packaged.exists()).then(|| packaged.to_owned())
    });
    let config = Config::load(config_path.as_deref()).unwrap_or_else(|e| fail(&e.to_string()));
    init_logging(&config, matches!(command, Command::Serve));

    let code = match command {
        Command::Serve => {
            serve(&config).await;
            0
        }
        Command::VerifyLog => verify_log(&config).await,
        Command::Backup { file } => backup(&config, &file).await,
        Command::CreateAdmin { name } => create_admin(&config, &name).await,
        Command::Token {
            command: TokenCommand::Create { user, days, name },
        } => create_token(&config, &user, days.as_deref().unwrap_or(""), &name).await,
        Command::EnrollToken(args) => enroll_token(&config, args).await,
    };
    std::process::exit(code);
}

/// The server's log goes to standard output; a host command's to standard error, so
/// that its standard output holds only what it prints for a script. Colour codes only go
/// to a terminal (a file or a pipe gets plain text that `grep` finds) and never when
/// `NO_COLOR` is set.
fn init_logging(config: &Config, serving: bool) {
    let default = if serving {
        "info,sqlx=warn,tower_http=warn"
    } else {
        "warn"
    };
    let filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let terminal = if serving {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let ansi = terminal && !no_color;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (config.log_format, serving) {
        (LogFormat::Json, true) => builder.json().init(),
        (LogFormat::Json, false) => builder.json().with_writer(std::io::stderr).init(),
        (LogFormat::Text, true) => builder.with_ansi(ansi).init(),
        (LogFormat::Text, false) => builder.with_ansi(ansi).with_writer(std::io::stderr).init(),
    }
}

async fn serve(config: &Config) {
    let built = portcullis_server::build(config)
        .await
        .unwrap_or_else(|e| fail(&format!("start-up failed: {e}")));
    if let Some(password) = &built.bootstrap_password {
        // Printed once, on the first start only; it must be changed at first sign-in.
        tracing::warn!(
            user = "admin",
            one_time_password = %password,
            "bootstrap administrator created: sign in with this one-time password and choose a new one"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on {}: {e}", config.listen)));
    tracing::info!(address = %config.listen, database = %redact(&config.database_url), "listening");
    let store = built.state.store.clone();
    portcullis_server::serve::serve(
        listener,
        built.router,
        portcullis_server::serve::HEADER_READ_TIMEOUT.min(config.request_timeout),
        config.request_timeout,
        async move {
            shutdown().await;
            // Waiting agents are answered now rather than holding the stop for up to
            // the request time-out; they come back to another replica or the restarted
            // server within a second.
            store.release_polls();
        },
    )
    .await;
    built.state.store.close().await;
}

/// The store of a host command, with the configured activity-log key. A host command
/// works on the database the server serves: an SQLite file that is not there (a wrong
/// directory, a forgotten `--config`) is refused, never created.
async fn open_store(config: &Config) -> Store {
    if let Some(db) = portcullis_server::config::sqlite_path(&config.database_url)
        && !db.exists()
    {
        fail(&format!(
            "there is no database at {} (database_url); give the server's configuration \
             with --config FILE",
            db.display()
        ));
    }
    if let AuditKeySource::File(path) = &config.audit_key
        && !path.exists()
    {
        fail(&format!(
            "there is no activity log key at {}; give the server's configuration with \
             --config FILE",
            path.display()
        ));
    }
    let key = portcullis_server::load_audit_key(&config.audit_key)
        .unwrap_or_else(|e| fail(&e.to_string()));
    Store::connect_with(&config.database_url, std::sync::Arc::new(SystemClock), key)
        .await
        .unwrap_or_else(|e| fail(&format!("database: {e}")))
}

/// Verifies every entry of the activity log, its HMACs and signed checkpoints, and the
/// position kept outside the database, in batches on one connection at a time; prints the
/// outcome. Exit status 0 when the log is intact, 1 when it is not, 2 when it could not
/// be read.
async fn verify_log(config: &Config) -> i32 {
    use portcullis_app::store::Verification;
    let store = open_store(config).await;
    let anchor = match config.audit_anchor_file.as_deref() {
        Some(path) => match portcullis_app::services::activity::read_anchor(path) {
            Ok(a) => a,
            Err(e) => fail(&format!("cannot read the anchor {}: {e}", path.display())),
        },
        None => None,
    };
    let outcome = store.verify_log_full(anchor.as_ref()).await;
    store.close().await;
    match outcome {
        Ok(Verification::Verified(cp)) => {
            println!(
                "activity log intact: entries 1 to {} verified (last hash {})",
                cp.seq, cp.hash
            );
            0
        }
        Ok(Verification::Broken(b)) => {
            println!("activity log BROKEN at entry {}: {}", b.at_seq, b.reason);
            1
        }
        Err(e) => {
            eprintln!("portcullis-server: verifying the activity log failed: {e}");
            2
        }
    }
}

/// What else a restore needs besides the database: the activity log's key and anchor
/// live outside it on purpose (whoever can rewrite the database must not re-sign the log).
fn outside_the_database(config: &Config) -> String {
    let key = match &config.audit_key {
        AuditKeySource::File(path) => format!("the activity log key file {}", path.display()),
        AuditKeySource::Given(_) => {
            "the activity log key (audit_key / PORTCULLIS_AUDIT_KEY in your configuration)".into()
        }
    };
    let anchor = match &config.audit_anchor_file {
        Some(path) => format!(" and the anchor file {}", path.display()),
        None => String::new(),
    };
    format!(
        "{key}{anchor} are not in the database: back them up too, or the restored log \
         cannot be verified"
    )
}

/// `backup FILE`: an online, consistent copy of an SQLite database. PostgreSQL has
/// `pg_dump` for this, and the command says so (exit 2) rather than half-doing it.
async fn backup(config: &Config, file: &Path) -> i32 {
    let Some(db) = portcullis_server::config::sqlite_path(&config.database_url) else {
        let name = postgres_database_name(&config.database_url);
        eprintln!(
            "portcullis-server: backup copies SQLite databases only. This server uses \
             PostgreSQL: back it up with pg_dump, e.g.\n  pg_dump --format=custom \
             --file={} {name}\n(with the host, user and password of database_url).\n\
             Note: {}.",
            file.display(),
            outside_the_database(config)
        );
        return 2;
    };
    let store = open_store(config).await;
    // The copy holds password hashes, sessions and the activity log: it is made as a new
    // file readable by its owner only (create_new neither overwrites nor follows a
    // symbolic link), and SQLite then writes into that empty file.
    {
        use std::os::unix::fs::OpenOptionsExt;
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(file)
        {
            fail(&if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{} exists already; choose a new file name (a backup never overwrites)",
                    file.display()
                )
            } else {
                format!("cannot create {}: {e}", file.display())
            });
        }
    }
    let outcome = store.backup_sqlite(file).await;
    store.close().await;
    if let Err(e) = outcome {
        let _ = std::fs::remove_file(file);
        fail(&format!("backup to {} failed: {e}", file.display()));
    }
    let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    println!(
        "backup of {} written to {} ({bytes} bytes)",
        db.display(),
        file.display()
    );
    println!("note: {}", outside_the_database(config));
    0
}

/// The database name of a PostgreSQL URL, for the `pg_dump` hint.
fn postgres_database_name(url: &str) -> String {
    url.split_once("://")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, path)| path.split('?').next().unwrap_or_default().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "DATABASE".into())
}

/// Prints a service's refusal the way the portal would word it, and exits 1.
fn refused(error: portcullis_app::error::AppError) -> ! {
    use portcullis_app::error::AppError;
    match &error {
        AppError::Validation(fields) => {
            for f in &fields.0 {
                eprintln!("portcullis-server: {}: {}", f.field, f.message);
            }
        }
        other => eprintln!("portcullis-server: {other}"),
    }
    std::process::exit(1)
}

async fn create_admin(config: &Config, name: &str) -> i32 {
    let store = open_store(config).await;
    let outcome =
        portcullis_app::services::users::recover_admin(&store, &Actor::host_console(), name).await;
    store.close().await;
    let done = outcome.unwrap_or_else(|e| refused(e));
    if done.created {
        println!("administrator {} created (admin on all)", done.username);
    } else {
        println!(
            "administrator {} restored: enabled, admin on all, new password; its sessions ended",
            done.username
        );
    }
    println!("one-time password: {}", done.password);
    eprintln!("Shown this once; it must be changed at the first sign-in.");
    0
}

async fn create_token(config: &Config, user: &str, days: &str, name: &str) -> i32 {
    let store = open_store(config).await;
    let outcome = portcullis_app::services::tokens::create_for(
        &store,
        &Actor::host_console(),
        Some(user),
        name,
        days,
        None,
    )
    .await;
    store.close().await;
    let created = outcome.unwrap_or_else(|e| refused(e));
    // Standard output carries the token alone, for `TOKEN=$(portcullis-server token …)`.
    println!("{}", created.token);
    eprintln!(
        "API token \"{}\" ({}) for {}, expires {}; shown this once.",
        created.info.name,
        created.info.prefix,
        user.trim().to_lowercase(),
        portcullis_app::model::format_utc(created.info.expires_at)
    );
    0
}

async fn enroll_token(config: &Config, args: EnrollArgs) -> i32 {
    use portcullis_app::services::enrollment::{self, EnrollTarget};
    let target = match (&args.vm, &args.group) {
        (Some(vm), _) => EnrollTarget::Vm(vm),
        (None, Some(group)) => EnrollTarget::Group(group),
        (None, None) => fail("give --vm NAME or --group NAME"),
    };
    let listen = config.listen.to_string();
    let server = enrollment::server_url(config.public_url.as_deref(), Some(&listen));
    if config.public_url.is_none() {
        eprintln!(
            "warning: public_url is not set, so the command names the listening address \
             {listen}; set public_url to the address agents reach the portal at"
        );
    }
    let store = open_store(config).await;
    let outcome = enrollment::create(&store, &Actor::host_console(), target, &server).await;
    store.close().await;
    let made = outcome.unwrap_or_else(|e| refused(e));
    // Two lines for scripts: the token, then the command to run on the host to protect.
    println!("{}", made.token);
    println!("{}", made.command);
    eprintln!(
        "Enrollment token for {}, valid until {}; shown this once.",
        made.target,
        portcullis_app::model::format_utc(made.expires_at)
    );
    if !made.warning.is_empty() {
        eprintln!("warning: {}", made.warning);
    }
    0
}

/// Database URLs may carry a password; log only scheme and host part.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

fn fail(message: &str) -> ! {
    eprintln!("portcullis-server: {message}");
    std::process::exit(2)
}
