//! `pls`: the ProMoS license server binary. Parses the command line and hands over
//! to the library: `pls serve` runs the server, `pls admin ...` administers it.
#![forbid(unsafe_code)]

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use keys::{
    Clock, Entitlements, LicenseData, LicenseNumber, LicenseType, MalmModule, Protection,
    SystemClock,
};
use portal::admin::{self, AdminContext, AdminEnvelope, AdminReply, AdminRequest};
use portal::config::Config;
use portal::domain::Licensee;
use portal::identity::Identity;
use portal::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(name = "pls", version, about = "ProMoS license server")]
struct Cli {
    /// TOML configuration file (optional; every key has a default).
    #[arg(long, global = true, env = "PLS_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config file and PLS_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: QUIC endpoint for daemons and the admin socket.
    Serve,
    /// Run the server with demo accounts and licenses (created on first start,
    /// printed with their passwords; `scripts/demo` starts a daemon next to it).
    Demo,
    /// Administer licenses and accounts (talks to the running server, or opens the
    /// database directly when none runs).
    Admin {
        /// Print the result as JSON instead of text.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Box<AdminCommand>,
    },
    /// Test support: streams store writes and prints an acknowledgement after each
    /// durable one (the crash-safety test kills it at random moments).
    #[command(name = "__crash-writer", hide = true)]
    CrashWriter,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a license directly (as an order; --paid activates it at once).
    CreateLicense(Box<CreateLicense>),
    /// Create a customer account (the web portal's registration will do this too).
    CreateAccount {
        email: String,
        #[arg(long)]
        company: String,
        #[arg(long)]
        first_name: String,
        #[arg(long)]
        last_name: String,
    },
    /// Make EMAIL a vendor admin (creating the account if needed); prints a
    /// one-hour link to set its password in the portal.
    CreateAdmin { email: String },
    /// List all licenses.
    List,
    /// Show a license: token, binding, services, mutations, ProMoS status.
    Show { number: String },
    /// Mark an order paid: activates the mutation (all awaiting ones without --mutation).
    MarkPaid {
        number: String,
        #[arg(long)]
        mutation: Option<u32>,
    },
    /// Order an upgrade (counts and options only go up; ProMoS must be stopped).
    Upgrade {
        number: String,
        #[command(flatten)]
        content: Content,
        /// Activate it at once.
        #[arg(long)]
        paid: bool,
    },
    /// Enter the serial of the dongle shipped with a hardware-dongle license.
    SetDongle { number: String, serial: String },
    /// Release the hardware binding so the license can start on another computer.
    Reset { number: String },
    /// Mark a customer trusted: their orders are activated at once.
    Trust {
        email: String,
        /// Take the trust back.
        #[arg(long)]
        revoke: bool,
    },
    /// Show the audit trail (of one license, or of everything).
    Audit {
        number: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Write a consistent backup of the database (works while the server runs).
    Backup { file: PathBuf },
    /// Restore a backup (the server must be stopped). The current database file,
    /// even a damaged one, is kept aside as pls.sqlite3.before-restore-<time>. A
    /// backup of an older schema is migrated to this pls's schema.
    Restore {
        file: PathBuf,
        /// Keep the backup's schema version instead of migrating, for going back
        /// to the older pls that wrote it (a rollback).
        #[arg(long)]
        keep_schema: bool,
    },
    /// Print the database's schema version and the one this pls writes (reads
    /// only; migrates nothing).
    Schema,
    /// Bring the records of the old sled store (a data directory's `db/`, or a
    /// backup file it wrote) into a new SQL store (the server must be stopped;
    /// the SQL store must hold no data yet).
    ImportSled {
        /// The sled directory (default: `<data dir>/db`) or sled-era backup file.
        source: Option<PathBuf>,
    },
    /// Print the public key and certificate fingerprint to give to daemons.
    Identity {
        /// Print a ready promos-licd.toml instead: server address, public key,
        /// certificate pin (never a token).
        #[arg(long)]
        daemon_config: bool,
        /// With --daemon-config: the license number to put in it.
        #[arg(long, requires = "daemon_config")]
        license: Option<String>,
    },
    /// Write the signed license file of a hardware-dongle license (as the
    /// portal's download gives it) to FILE, replaced atomically, or to stdout.
    ExportLicense {
        number: String,
        file: Option<PathBuf>,
    },
    /// Answer a request file of a site without internet (written by
    /// `promos-licd offline request`): writes the answer file to FILE
    /// (replaced atomically) or stdout. An activation request needs no token:
    /// the vendor authorises it. The check-in is recorded as "by file".
    OfflineAnswer {
        /// The request file (`-` for stdin).
        request: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check the database's internal consistency.
    Verify,
}

#[derive(Args, Debug)]
struct CreateLicense {
    #[arg(long = "type", value_enum)]
    license_type: TypeArg,
    /// Defaults to soft-dongle for standard licenses, engineering for engineering ones.
    #[arg(long, value_enum)]
    protection: Option<ProtectionArg>,
    #[command(flatten)]
    content: Content,
    /// Licensee company.
    #[arg(long)]
    company: String,
    #[arg(long)]
    first_name: String,
    #[arg(long)]
    last_name: String,
    #[arg(long, default_value = "")]
    street: String,
    #[arg(long, default_value = "")]
    postcode: String,
    #[arg(long, default_value = "")]
    city: String,
    #[arg(long, default_value = "")]
    state: String,
    #[arg(long, default_value = "")]
    country: String,
    #[arg(long, default_value = "")]
    email: String,
    #[arg(long, default_value = "")]
    phone: String,
    /// License data shown in ProMoS: name.
    #[arg(long)]
    data_name: String,
    #[arg(long)]
    data_postcode: String,
    #[arg(long)]
    data_city: String,
    /// Owner account (email); the license then appears on that account's pages.
    #[arg(long)]
    account: Option<String>,
    /// Activate at once (payment received).
    #[arg(long)]
    paid: bool,
}

/// What a license holds beyond (or, for upgrades, on top of) what it has.
#[derive(Args, Debug, Default)]
struct Content {
    /// Data points to buy per driver, e.g. `--driver saia_pcd=6000` (repeatable).
    #[arg(long = "driver", value_name = "KEY=COUNT")]
    drivers: Vec<String>,
    /// Remote-alarming module: email, sms_pager, http_request, espa444, spooler_program.
    #[arg(long = "malm", value_name = "MODULE")]
    malm: Vec<String>,
    #[arg(long)]
    mystrom: bool,
    #[arg(long)]
    philips_hue: bool,
    /// Simultaneous GE (Remote) users (create: total, at least 1; upgrade: users added).
    #[arg(long)]
    ge_users: Option<u32>,
    /// Simultaneous pWA users (create: total, at least 1; upgrade: users added).
    #[arg(long)]
    pwa_users: Option<u32>,
}

impl Content {
    fn is_empty(&self) -> bool {
        self.drivers.is_empty()
            && self.malm.is_empty()
            && !self.mystrom
            && !self.philips_hue
            && self.ge_users.is_none()
            && self.pwa_users.is_none()
    }

    /// Adds the bought amounts and options to `base`. `users_are_totals`: the user
    /// counts replace the base's (create) instead of adding to it (upgrade).
    fn apply(&self, mut e: Entitlements, users_are_totals: bool) -> Result<Entitlements> {
        for spec in &self.drivers {
            let (key, count) = spec.split_once('=').with_context(|| {
                format!("--driver {spec:?}: expected KEY=COUNT, e.g. saia_pcd=6000")
            })?;
            let driver = keys::Driver::from_key(key.trim()).with_context(|| {
                let keys: Vec<&str> = keys::Driver::ALL.iter().map(|d| d.key()).collect();
                format!(
                    "--driver {spec:?}: unknown driver {key:?}; known: {}",
                    keys.join(", ")
                )
            })?;
            let count: u32 = count
                .trim()
                .parse()
                .with_context(|| format!("--driver {spec:?}: {count:?} is not a count"))?;
            let entry = e.drivers.entry(driver).or_insert(0);
            *entry = entry.saturating_add(count);
        }
        for m in &self.malm {
            let module = MalmModule::from_key(m.trim()).with_context(|| {
                let keys: Vec<&str> = MalmModule::ALL.iter().map(|m| m.key()).collect();
                format!("--malm {m:?}: unknown module; known: {}", keys.join(", "))
            })?;
            e.malm.insert(module);
        }
        e.mystrom |= self.mystrom;
        e.philips_hue |= self.philips_hue;
        for (value, slot) in [
            (self.ge_users, &mut e.ge_users),
            (self.pwa_users, &mut e.pwa_users),
        ] {
            if let Some(n) = value {
                if users_are_totals {
                    if n == 0 {
                        bail!("a license includes at least 1 simultaneous user");
                    }
                    *slot = n;
                } else {
                    *slot = slot.saturating_add(n);
                }
            }
        }
        Ok(e)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TypeArg {
    Standard,
    Engineering,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ProtectionArg {
    SoftDongle,
    HardDongle,
    Engineering,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> Result<()> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars())
        .context("reading the configuration")?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = dir;
    }
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Demo => demo(config).await,
        Command::Admin { json, command } => admin_command(config, json, *command).await,
        Command::CrashWriter => portal::blocking(move || crash_writer(&config)).await,
    }
}

/// Logs to stderr: text by default, one JSON object per line with `log.json`.
/// Under systemd (`JOURNAL_STREAM` set) the text has no timestamps or colours,
/// since journald adds its own time and keeps lines as they are.
fn init_logging(config: &Config) -> Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .with_context(|| format!("log filter {:?} is not valid", config.log.filter))?;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && !journald)
        .with_writer(std::io::stderr);
    if config.log.json {
        builder.json().init();
    } else if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn serve(config: Config) -> Result<()> {
    init_logging(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    portal::run(config, clock, shutdown_signal())
        .await
        .context("the license server failed")?;
    Ok(())
}

async fn demo(config: Config) -> Result<()> {
    init_logging(&config)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let server = portal::Server::bind(config.clone(), Arc::clone(&clock))
        .await
        .context("the license server could not start")?;
    let key = Arc::clone(&server.identity().key);
    let demo = {
        let (store, key, now) = (server.store(), Arc::clone(&key), clock.now());
        portal::blocking(move || portal::demo::seed(&store, &key, now))
            .await
            .context("creating the demo data failed")?
    };
    // The daemon reaches a wildcard listener on loopback.
    let mut quic = server.quic_addr();
    if quic.ip().is_unspecified() {
        quic.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let env = portal::demo::daemon_env(
        &demo,
        quic,
        &server.identity().cert_path,
        &key.public().to_string(),
    );
    let env_path = config.data_dir.join("demo-daemon.env");
    // It holds a license token: readable by the owner only.
    std::fs::write(&env_path, env)
        .and_then(|()| {
            std::fs::set_permissions(
                &env_path,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
        })
        .with_context(|| format!("cannot write {}", env_path.display()))?;
    println!("{}", portal::demo::banner(&demo, server.http_addr()));
    println!("Daemon settings: {}\n", env_path.display());
    server
        .run(shutdown_signal())
        .await
        .context("the license server failed")?;
    Ok(())
}

/// Completes on SIGTERM (systemd stop) or Ctrl-C. The SIGTERM handler is
/// installed when this is called, before the server starts, so a stop right
/// after the start is a clean shutdown too.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    async move {
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "admin".into())
}

fn number(s: &str) -> Result<LicenseNumber> {
    s.parse::<LicenseNumber>()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn admin_command(config: Config, json: bool, command: AdminCommand) -> Result<()> {
    // Where the reply's text goes instead of stdout (export-license FILE).
    let mut output: Option<PathBuf> = None;
    let request = match command {
        AdminCommand::Restore { file, keep_schema } => {
            return restore(&config, &file, keep_schema).await
        }
        AdminCommand::Schema => return schema(&config, json).await,
        AdminCommand::ImportSled { source } => {
            return import_sled(&config, source.as_deref()).await
        }
        AdminCommand::CreateLicense(c) => {
            let license_type = match c.license_type {
                TypeArg::Standard => LicenseType::Standard,
                TypeArg::Engineering => LicenseType::Engineering,
            };
            let protection = match (c.protection, license_type) {
                (Some(ProtectionArg::SoftDongle), _) => Protection::SoftDongle,
                (Some(ProtectionArg::HardDongle), _) => Protection::HardDongle,
                (Some(ProtectionArg::Engineering), _) | (None, LicenseType::Engineering) => {
                    Protection::Engineering
                }
                (None, LicenseType::Standard) => Protection::SoftDongle,
            };
            let entitlements = match license_type {
                LicenseType::Engineering => {
                    if !c.content.is_empty() {
                        bail!("engineering licenses have fixed driver counts and options; leave out --driver, --malm and the user counts");
                    }
                    Entitlements::engineering()
                }
                LicenseType::Standard => c.content.apply(Entitlements::standard_base(), true)?,
            };
            AdminRequest::CreateLicense {
                license_type,
                protection,
                entitlements,
                licensee: Licensee {
                    company: c.company,
                    first_name: c.first_name,
                    last_name: c.last_name,
                    street: c.street,
                    postcode: c.postcode,
                    city: c.city,
                    state: c.state,
                    country: c.country,
                    email: c.email,
                    phone: c.phone,
                },
                license_data: LicenseData {
                    name: c.data_name,
                    postcode: c.data_postcode,
                    city: c.data_city,
                },
                account_email: c.account,
                paid: c.paid,
            }
        }
        AdminCommand::CreateAccount {
            email,
            company,
            first_name,
            last_name,
        } => AdminRequest::CreateAccount {
            email,
            company,
            first_name,
            last_name,
        },
        AdminCommand::CreateAdmin { email } => AdminRequest::CreateAdmin {
            email,
            public_url: config.http.public_url.clone(),
        },
        AdminCommand::List => AdminRequest::List,
        AdminCommand::Show { number: n } => AdminRequest::Show {
            number: number(&n)?,
        },
        AdminCommand::MarkPaid {
            number: n,
            mutation,
        } => AdminRequest::MarkPaid {
            number: number(&n)?,
            mutation,
        },
        AdminCommand::Upgrade {
            number: n,
            content,
            paid,
        } => {
            if content.is_empty() {
                bail!("an upgrade must add something: --driver, --malm, --mystrom, --philips-hue, --ge-users or --pwa-users");
            }
            AdminRequest::Upgrade {
                number: number(&n)?,
                adds: content.apply(Entitlements::none(), false)?,
                paid,
            }
        }
        AdminCommand::SetDongle { number: n, serial } => AdminRequest::SetDongle {
            number: number(&n)?,
            serial: serial.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
        },
        AdminCommand::Reset { number: n } => AdminRequest::Reset {
            number: number(&n)?,
        },
        AdminCommand::Trust { email, revoke } => AdminRequest::Trust {
            email,
            trusted: !revoke,
        },
        AdminCommand::Audit { number: n, limit } => AdminRequest::Audit {
            number: n.as_deref().map(number).transpose()?,
            limit,
        },
        AdminCommand::Backup { file } => {
            let path = if file.is_absolute() {
                file
            } else {
                std::env::current_dir()?.join(file)
            };
            AdminRequest::Backup { path }
        }
        AdminCommand::Identity {
            daemon_config: false,
            ..
        } => AdminRequest::Identity,
        AdminCommand::Identity {
            daemon_config: true,
            license,
        } => AdminRequest::DaemonConfig {
            number: license.as_deref().map(number).transpose()?,
        },
        AdminCommand::ExportLicense { number: n, file } => {
            output = file;
            AdminRequest::ExportLicense {
                number: number(&n)?,
            }
        }
        AdminCommand::OfflineAnswer { request, out } => {
            output = out;
            AdminRequest::OfflineAnswer {
                request: wire::offline::read_file(&request, wire::offline::FileKind::Request)
                    .map_err(anyhow::Error::msg)?,
            }
        }
        AdminCommand::Verify => AdminRequest::Verify,
    };
    // One key per invocation, sent again with every retry (the creating
    // commands answer a retry with what the first attempt made).
    let retry = matches!(
        request,
        AdminRequest::CreateLicense { .. }
            | AdminRequest::CreateAccount { .. }
            | AdminRequest::Upgrade { .. }
    );
    let envelope = AdminEnvelope {
        idempotency_key: Some(hex::encode(rand::random::<[u8; 16]>())),
        operator: operator(),
        request,
    };
    let socket = config.admin_socket_path();
    let mut attempt = 0;
    let reply = loop {
        attempt += 1;
        match admin::send(&socket, &envelope).await {
            Ok(Some(reply)) => break reply.map_err(|e| anyhow::anyhow!(e))?,
            Ok(None) => {
                // No server runs: do the work on the database directly.
                let ctx = {
                    let config = config.clone();
                    let answers_a_file =
                        matches!(envelope.request, AdminRequest::OfflineAnswer { .. });
                    portal::blocking(move || direct_context(&config, answers_a_file)).await?
                };
                let envelope = envelope.clone();
                break tokio::task::spawn_blocking(move || admin::execute(&ctx, envelope))
                    .await?
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            // The answer was lost (the server stopped or crashed meanwhile):
            // the same key again cannot duplicate. Up to 10 tries, 1 s apart:
            // long enough for a restart by systemd.
            Err(e) if retry && attempt < 10 => {
                eprintln!("no answer from the server ({e}); trying again with the same request");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("talking to the server on {}", socket.display())))
            }
        }
    };
    match output {
        Some(path) => {
            write_atomically(&path, reply.text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("written: {}", path.display());
        }
        None => print_reply(&reply, json),
    }
    Ok(())
}

/// Replaces `path` with `bytes`: a temporary file beside it, synced, renamed
/// over it, the directory synced, so `path` is the old or the whole new file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn print_reply(reply: &AdminReply, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reply.data).unwrap_or_default()
        );
    } else {
        print!("{}", reply.text);
    }
}

/// The context of an admin command run on the stopped server's database;
/// with `answers_a_file` (`offline-answer`) it gets the daemon-facing service
/// with the server's rules ([`portal::standalone_daemon_service`]).
fn direct_context(config: &Config, answers_a_file: bool) -> Result<AdminContext> {
    let identity = Identity::load_or_create(config)?;
    let store = Arc::new(config.open_store()?);
    let clock: Arc<dyn keys::Clock> = Arc::new(SystemClock);
    let daemon_service = if answers_a_file {
        Some(
            portal::standalone_daemon_service(
                config,
                Arc::clone(&store),
                Arc::clone(&identity.key),
                Arc::clone(&clock),
            )
            .map_err(|e| anyhow::anyhow!("preparing the answer: {e}"))?,
        )
    } else {
        None
    };
    Ok(AdminContext {
        store,
        key: Arc::clone(&identity.key),
        clock,
        daemon_service,
        identity: identity.operator_notice(),
        daemon: portal::daemon_config::DaemonSettings::new(
            &config.quic,
            config.quic.listen,
            &identity,
        ),
    })
}

/// `pls admin schema`: asks the running server, or reads the stopped server's
/// database without opening it as a store (which would migrate it).
async fn schema(config: &Config, json: bool) -> Result<()> {
    let envelope = AdminEnvelope {
        idempotency_key: None,
        operator: operator(),
        request: AdminRequest::Schema,
    };
    let reply = match admin::send(&config.admin_socket_path(), &envelope)
        .await
        .ok()
        .flatten()
    {
        Some(reply) => reply.map_err(|e| {
            anyhow::anyhow!("the running server cannot answer `schema` (an older pls?): {e}")
        })?,
        None => match &config.database.url {
            Some(_) => {
                let config = config.clone();
                let version = portal::blocking(move || -> Result<u32> {
                    Ok(config.open_store()?.schema_version()?)
                })
                .await?;
                admin::schema_reply(Some(version))
            }
            None => admin::schema_reply(Store::schema_version_at(&config.db_path())?),
        },
    };
    print_reply(&reply, json);
    Ok(())
}

/// Fails if a server answers on the data directory's admin socket.
async fn refuse_if_serving(config: &Config, what: &str) -> Result<()> {
    let probe = AdminEnvelope {
        idempotency_key: None,
        operator: operator(),
        request: AdminRequest::Identity,
    };
    if admin::send(&config.admin_socket_path(), &probe)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        bail!("the server is running on this data directory; stop it (systemctl stop pls) before {what}");
    }
    Ok(())
}

async fn restore(config: &Config, file: &Path, keep_schema: bool) -> Result<()> {
    refuse_if_serving(config, "restoring").await?;
    let (config, file) = (config.clone(), file.to_owned());
    portal::blocking(move || restore_stopped(&config, &file, keep_schema)).await
}

/// The store part of `pls admin restore` (on a blocking thread).
fn restore_stopped(config: &Config, file: &Path, keep_schema: bool) -> Result<()> {
    if config.database.url.is_some() {
        let store = config.open_store()?;
        let now = SystemClock.now();
        let aside = config
            .data_dir
            .join(format!("pls-before-restore-{}.sqlite3", now.0));
        std::fs::create_dir_all(&config.data_dir)?;
        let summary = store.restore_into(file, &aside, now)?;
        println!(
            "the database's contents before the restore were saved to {}",
            aside.display()
        );
        println!(
            "restored {} entries ({} licenses, schema version {}) from {} into {}",
            summary.entries,
            summary.licenses,
            summary.schema_version,
            file.display(),
            store.describe()
        );
        return Ok(());
    }
    let db = config.db_path();
    let (summary, aside) = Store::restore(file, &db, keep_schema, SystemClock.now())?;
    if let Some(aside) = aside {
        println!("the current database was moved to {}", aside.display());
    }
    println!(
        "restored {} entries ({} licenses, schema version {}) from {} into {}",
        summary.entries,
        summary.licenses,
        summary.schema_version,
        file.display(),
        db.display()
    );
    let now = Store::schema_version_at(&db)?.unwrap_or(summary.schema_version);
    if now != summary.schema_version {
        println!(
            "migrated from schema version {} to {now}",
            summary.schema_version
        );
    }
    Ok(())
}

async fn import_sled(config: &Config, source: Option<&Path>) -> Result<()> {
    refuse_if_serving(config, "importing").await?;
    let source = source.map_or_else(|| config.sled_dir(), Path::to_path_buf);
    let config = config.clone();
    portal::blocking(move || import_sled_stopped(&config, &source)).await
}

/// The store part of `pls admin import-sled` (on a blocking thread).
fn import_sled_stopped(config: &Config, source: &Path) -> Result<()> {
    let (summary, target) = match &config.database.url {
        Some(url) => {
            let store = Store::open_url(url)?;
            (
                portal::import_sled::import_into(source, &store)?,
                store.describe(),
            )
        }
        None => {
            let db = config.db_path();
            (
                portal::import_sled::import(source, &db)?,
                db.display().to_string(),
            )
        }
    };
    println!(
        "imported {} records ({} licenses) of sled schema {} from {} into {}",
        summary.entries,
        summary.licenses,
        summary.schema_version,
        source.display(),
        target
    );
    Ok(())
}

/// Test support for the crash-safety test: creates licenses and activates them,
/// one durable write after another, and prints `ack license <n>` / `ack paid <n>`
/// after each write returned (which is after its flush).
fn crash_writer(config: &Config) -> Result<()> {
    use std::io::Write;
    let store = config.open_store()?;
    let key = keys::SigningKeyPair::from_seed(&[7; 32]);
    let actor = portal::domain::Actor::Admin("crash-writer".into());
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let now = keys::UnixTime(1_700_000_000 + i);
        let (license, m) = store.create_license_with(
            portal::domain::NewLicense {
                account: None,
                license_type: LicenseType::Standard,
                protection: Protection::SoftDongle,
                licensee: Licensee {
                    company: format!("Company {i}"),
                    ..Licensee::default()
                },
                license_data: LicenseData {
                    name: "Site".into(),
                    postcode: "3123".into(),
                    city: "Belp".into(),
                },
            },
            portal::store::NewMutation {
                kind: portal::domain::MutationKind::New,
                adds: Entitlements::standard_base(),
                price_net: None,
                priced: None,
                remarks: String::new(),
            },
            true,
            false,
            &key,
            &actor,
            now,
        )?;
        writeln!(out, "ack license {}", license.number)?;
        out.flush()?;
        store.activate_mutation(&license.number, m.number, &key, &actor, now)?;
        writeln!(out, "ack paid {}", license.number)?;
        out.flush()?;
    }
    Ok(())
}
