//! `promos-licd`: the daemon (`run`) and its small human CLI.

#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use daemon::cli_text::{self, Lang};
use daemon::socket::SocketClient;
use daemon::Config;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "promos-licd", version, about = "ProMoS license daemon")]
struct Cli {
    /// Config file (default /etc/promos-licd/promos-licd.toml if it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Socket path for the client commands (default from the config).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon (systemd starts this).
    Run,
    /// Print this daemon's peer public key (creating the identity on first use),
    /// for the other hosts' `[[peers.peer]]` entries.
    PeerKey,
    /// Print this host's hardware ID (32 hex digits).
    Hwid {
        /// Also print the machine facts it is computed from (to see what changed).
        #[arg(long)]
        facts: bool,
    },
    /// Show the license state (asks the running daemon).
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the GE and pWA seats in use.
    Seats,
    /// Check with the license server now.
    CheckNow,
    /// The first-start dialog on a terminal: server, license number and token
    /// (not echoed), the hardware ID shown; writes the configuration and
    /// activates through the running daemon. German or English by the locale.
    Setup,
    /// Bind this host to a license (the first-start dialog's last step, for scripts).
    Activate {
        /// License server address (default: the daemon's configured one,
        /// license.promosnt.com unless changed).
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        license: String,
        /// The license token from the portal ("Show token"). Prefer the
        /// PROMOS_LICD_TOKEN environment variable so it stays out of the shell history.
        #[arg(long, env = "PROMOS_LICD_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Checks and activation by file, for sites without any internet
    /// (asks the running daemon).
    #[command(subcommand)]
    Offline(Offline),
    /// Find (and with --fix, rename) old license files (manual chapter 11).
    Doctor {
        #[arg(long)]
        project: PathBuf,
        #[arg(long)]
        fix: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Offline {
    /// Write a request file to upload on the license page ("Offline check"):
    /// this host's check, or, not yet activated, its activation request.
    Request {
        /// Where to write it (default: the printed name in the current directory;
        /// `-` for stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The license number, for a host not activated yet (from the license page).
        #[arg(long)]
        license: Option<String>,
    },
    /// Apply the answer file downloaded from the license page.
    Apply {
        /// The answer file (`-` for stdin).
        file: PathBuf,
    },
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("PROMOS_LICD_"))
        .collect()
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(cli.config.as_deref(), &env_map()).context("reading the configuration")
}

/// Logs to stderr: text by default, one JSON object per line with
/// `PROMOS_LICD_LOG_JSON=1`. Under systemd (`JOURNAL_STREAM` set) the text has no
/// timestamps or colours, since journald adds its own time.
fn init_logging() {
    use std::io::IsTerminal;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let json = matches!(
        std::env::var("PROMOS_LICD_LOG_JSON").as_deref(),
        Ok("1" | "true" | "yes")
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PROMOS_LICD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(std::io::stderr().is_terminal() && !journald)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match &cli.command {
        Command::Hwid { facts } => {
            println!("{}", hardware_id()?);
            if *facts {
                for f in daemon::hwid::all_facts() {
                    println!("  {f}");
                }
            }
            Ok(())
        }
        Command::Doctor { project, fix } => doctor(project, *fix),
        Command::Setup => setup(&cli),
        Command::PeerKey => {
            let config = load_config(&cli)?;
            let id = daemon::peer::PeerIdentity::load_or_create(&config.data_dir)
                .context("loading the peer identity")?;
            println!("{}", id.public());
            Ok(())
        }
        Command::Run => {
            let config = load_config(&cli)?;
            // One thread: the daemon's work is a few socket lines and one
            // check a day; each worker thread of a multi-threaded runtime
            // costs its stack and a malloc arena of resident memory (the
            // idle RSS goal is 8 MiB).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async {
                // Registered before the socket exists, so a SIGTERM right after
                // READY already means "shut down cleanly".
                use tokio::signal::unix::{signal, SignalKind};
                let mut term =
                    signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
                let mut int =
                    signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
                let shutdown = async move {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                };
                let clock = daemon::service::clock_for(&config);
                daemon::run(config, clock, shutdown)
                    .await
                    .context("promos-licd stopped")
            })
        }
        _ => {
            let socket = match &cli.socket {
                Some(s) => s.clone(),
                None => load_config(&cli)?.socket_path,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(client_command(&cli.command, &socket))
        }
    }
}

async fn client_command(cmd: &Command, socket: &std::path::Path) -> anyhow::Result<()> {
    let lang = Lang::current();
    let mut c = SocketClient::connect(socket).await.with_context(|| {
        format!(
            "cannot reach the daemon at {} (is promos-licd running? are you in its group?)",
            socket.display()
        )
    })?;
    match cmd {
        Command::Status { json: raw } => {
            let v = c.call(&json!({"cmd": "status"})).await?;
            if *raw {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", cli_text::status(lang, &v["status"]));
            }
        }
        Command::Seats => {
            let v = c.call(&json!({"cmd": "seats"})).await?;
            print!("{}", cli_text::seats(lang, &v));
        }
        Command::CheckNow => {
            let v = c.call(&json!({"cmd": "check_now"})).await?;
            print!("{}", cli_text::status(lang, &v["status"]));
            // Exit codes (README, "Commands"): 0 the server confirmed the
            // license, 1 the check failed, 2 refused, 3 nothing to check.
            let code = match v["check"].as_str() {
                Some("succeeded") => 0,
                Some("refused") => 2,
                Some("not_activated") => 3,
                _ => 1,
            };
            if code != 0 {
                eprintln!("{}", cli_text::check_failed(lang, v["check"].as_str()));
                std::process::exit(code);
            }
        }
        Command::Activate {
            server,
            license,
            token,
        } => {
            let id = c.call(&json!({"cmd": "hwid"})).await?;
            let status = c.call(&json!({"cmd": "status"})).await?;
            let shown = server.clone().unwrap_or_else(|| {
                status["status"]["server"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned()
            });
            print!(
                "{}",
                cli_text::activation(
                    lang,
                    &shown,
                    license,
                    id["hardware_id"].as_str().unwrap_or("?")
                )
            );
            let v = c.call(&json!({"cmd": "activate", "server": server, "license_number": license, "token": token})).await?;
            if v["ok"] != json!(true) {
                bail!("{}", cli_text::activation_failed(lang, &v));
            }
            println!("{}", cli_text::activated(lang));
            print!("{}", cli_text::status(lang, &v["status"]));
        }
        Command::Offline(Offline::Request { out, license }) => {
            let v = c
                .call(&json!({"cmd": "offline_request", "license_number": license}))
                .await?;
            if v["ok"] != json!(true) {
                bail!("{}", cli_text::offline_request_failed(lang, &v));
            }
            let text = v["file"].as_str().unwrap_or_default();
            let path = out
                .clone()
                .unwrap_or_else(|| PathBuf::from(v["file_name"].as_str().unwrap_or("request.txt")));
            if path == std::path::Path::new("-") {
                print!("{text}");
            } else {
                std::fs::write(&path, text)
                    .with_context(|| cli_text::offline_request_not_written(lang, &path))?;
                println!("{}", cli_text::offline_request_written(lang, &path));
            }
        }
        Command::Offline(Offline::Apply { file }) => {
            let text = match wire::offline::read_file(file, wire::offline::FileKind::Answer) {
                Ok(text) => text,
                Err(e) => bail!("{}", cli_text::offline_unreadable(lang, &e)),
            };
            let v = c
                .call(&json!({"cmd": "offline_apply", "file": text}))
                .await?;
            if v["ok"] != json!(true) {
                eprintln!("{}", cli_text::offline_refused(lang, &v));
                std::process::exit(2);
            }
            println!(
                "{}",
                cli_text::offline_applied(lang, v["applied"].as_str().unwrap_or("?"))
            );
            print!("{}", cli_text::status(lang, &v["status"]));
        }
        _ => {}
    }
    Ok(())
}

/// This host's hardware ID as the daemon computes it.
fn hardware_id() -> anyhow::Result<keys::HardwareId> {
    Ok(match std::env::var(daemon::config::TEST_HARDWARE_ID_ENV) {
        Ok(v) if !v.is_empty() => v
            .parse::<keys::HardwareId>()
            .context("PROMOS_LICD_TEST_HARDWARE_ID (test-only)")?,
        _ => match std::env::var(daemon::config::SIMULATED_HARDWARE_FACTS_ENV) {
            Ok(path) if !path.is_empty() => {
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("PROMOS_LICD_SIMULATED_HARDWARE_FACTS (test-only): {path}")
                })?;
                daemon::hwid::from_facts(daemon::config::read_fact_lines(&text))
            }
            _ => daemon::hwid::compute(),
        },
    })
}

/// How often a refused token may be typed again.
const TOKEN_ATTEMPTS: usize = 3;

fn setup(cli: &Cli) -> anyhow::Result<()> {
    use daemon::setup::Dialog;
    let lang = Lang::current();
    let config = load_config(cli)?;
    let path = cli
        .config
        .clone()
        .or_else(|| std::env::var_os("PROMOS_LICD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(daemon::config::DEFAULT_CONFIG));
    let dialog = Dialog {
        lang,
        hardware_id: hardware_id()?.to_string(),
        // Several servers: shown and kept as one comma-separated list.
        server: config
            .servers()
            .into_iter()
            .map(|(s, _)| s)
            .collect::<Vec<_>>()
            .join(", "),
        license: config.license_number.clone(),
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    let Some(answers) = dialog.ask(&mut stdin.lock(), &mut out)? else {
        bail!(
            "{}",
            lang.pick("Einrichtung abgebrochen.", "Setup cancelled.")
        );
    };
    daemon::setup::write_config(&path, &answers).map_err(anyhow::Error::msg)?;
    println!(
        "{} {}",
        lang.pick("Konfiguration geschrieben:", "Configuration written:"),
        path.display()
    );
    let socket = cli.socket.clone().unwrap_or(config.socket_path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = SocketClient::connect(&socket).await.with_context(|| {
            lang.pick(
                "Der Lizenzdienst antwortet nicht (läuft promos-licd? systemctl start promos-licd)",
                "The license daemon does not answer (is promos-licd running? systemctl start promos-licd)",
            )
            .to_owned()
        })?;
        for attempt in 1..=TOKEN_ATTEMPTS {
            let token = match std::env::var("PROMOS_LICD_TOKEN") {
                Ok(t) if !t.is_empty() && attempt == 1 => t,
                _ => rpassword::prompt_password(lang.pick(
                    "Lizenz-Token (wird nicht angezeigt): ",
                    "License token (not shown): ",
                ))
                .context("reading the token")?,
            };
            let v = c
                .call(&json!({
                    "cmd": "activate",
                    // A list: the daemon tries its configured servers in turn.
                    "server": (!answers.server.contains(',')).then_some(&answers.server),
                    "license_number": answers.license.to_string(),
                    "token": token.trim()
                }))
                .await?;
            if v["ok"] == json!(true) {
                println!("{}", cli_text::activated(lang));
                print!("{}", cli_text::status(lang, &v["status"]));
                return Ok(());
            }
            let message = match lang {
                Lang::De => v["message_de"].as_str().or(v["message"].as_str()),
                Lang::En => v["message"].as_str(),
            }
            .unwrap_or("?");
            println!(
                "{} {message}",
                lang.pick("Aktivierung abgelehnt:", "Activation refused:")
            );
            if v["reason"] != json!("wrong_token") {
                break;
            }
        }
        bail!(
            "{}",
            lang.pick("Nicht aktiviert.", "Not activated.")
        )
    })
}

fn doctor(project: &std::path::Path, fix: bool) -> anyhow::Result<()> {
    let lang = Lang::current();
    let findings = daemon::doctor::examine(project)?;
    print!("{}", cli_text::doctor(lang, project, &findings, fix));
    if findings.is_empty() {
        return Ok(());
    }
    if fix {
        let done = daemon::doctor::fix(&findings, keys::UnixTime::now())?;
        print!("{}", cli_text::fixed(lang, &done));
    } else {
        std::process::exit(1);
    }
    Ok(())
}
