//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` and
//! `pg_ctl` of Debian's `postgresql` package (installed by `scripts/setup`) in a
//! temporary directory, on a free port of 127.0.0.1, never a server that happens
//! to run on the machine. As root the cluster runs as the `postgres` user
//! (`initdb` refuses root). It stops when the [`Cluster`] is dropped, and a
//! watcher stops it when the process that started it ends in any way (a test
//! binary's statics are never dropped).
//!
//! Test settings, not production ones: `fsync=off` (a test kills processes, not
//! the machine: what a commit wrote is in the OS cache), authentication `trust`
//! on the loopback only.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("PostgreSQL's server programs (initdb, pg_ctl) are not installed; run ./scripts/setup (Debian package postgresql)")]
    NotInstalled,
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The directory of `initdb` and `pg_ctl`: `PLS_PG_BINDIR`, `pg_config
/// --bindir`'s server directory, or the newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PLS_PG_BINDIR") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// Whether this process runs as root (tests that mount or switch users need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(55432)
}

impl Cluster {
    /// Creates and starts a cluster (a few seconds).
    pub fn start() -> Result<Cluster, ClusterError> {
        Self::start_with("")
    }

    /// A primary and its synchronous streaming standby (each its own cluster
    /// on its own port): a commit returns only when the standby has it, so a
    /// promotion after the primary's crash loses nothing acknowledged. Connect
    /// with [`Cluster::failover_url`].
    pub fn start_replicated() -> Result<(Cluster, Cluster), ClusterError> {
        let primary = Self::start_with(
            "wal_level = replica\nmax_wal_senders = 4\nsynchronous_standby_names = '*'\nsynchronous_commit = on\n",
        )?;
        let mut standby = Self::empty()?;
        let data = standby.data_dir();
        standby.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "pls",
                "-D",
                &data.to_string_lossy(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        )?;
        // The copy of the primary's settings would make the promoted standby
        // wait for a standby of its own at every commit.
        {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .and_then(|mut f| f.write_all(b"synchronous_standby_names = ''\n"))
                .map_err(|e| step("writing the standby's postgresql.conf", e))?;
        }
        standby.pg_start()?;
        standby.watch_parent();
        // Wait until the primary sees it streaming: only then are commits
        // synchronous (before, they would wait for it anyway).
        let mut admin = postgres::Client::connect(&primary.url("postgres"), postgres::NoTls)
            .map_err(|e| step("connecting to the primary", e))?;
        for _ in 0..300 {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                    &[],
                )
                .map_err(|e| step("pg_stat_replication", e))?
                .get(0);
            if n > 0 {
                return Ok((primary, standby));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(step(
            "waiting for the standby",
            "it never started streaming",
        ))
    }

    /// Makes this standby the primary (`pg_ctl promote`, waits until it takes writes).
    pub fn promote(&self) -> Result<(), ClusterError> {
        self.run(
            "pg_ctl",
            &["-D", &self.data_dir().to_string_lossy(), "-w", "promote"],
        )
    }

    /// The connection string of database `name` on whichever of `clusters`
    /// takes writes (`target_session_attrs=read-write`), as an operator writes
    /// it for a primary and its standby.
    pub fn failover_url(clusters: &[&Cluster], name: &str) -> String {
        let hosts = vec!["127.0.0.1"; clusters.len()].join(",");
        let ports: Vec<String> = clusters.iter().map(|c| c.port.to_string()).collect();
        format!(
            "host={hosts} port={} user=pls dbname={name} connect_timeout=2 target_session_attrs=read-write",
            ports.join(",")
        )
    }

    /// A cluster directory with nothing in it yet.
    fn empty() -> Result<Cluster, ClusterError> {
        let bin = bindir().ok_or(ClusterError::NotInstalled)?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("pls-pg-")
            .tempdir()
            .map_err(|e| step("creating the temporary directory", e))?;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .map_err(|e| step("opening the temporary directory to postgres", e))?;
        }
        Ok(Cluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        })
    }

    /// Creates and starts a cluster with `conf` added to its `postgresql.conf`.
    fn start_with(conf: &str) -> Result<Cluster, ClusterError> {
        let mut cluster = Self::empty()?;
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "pls",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        if !conf.is_empty() {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.conf"))
                .and_then(|mut f| f.write_all(conf.as_bytes()))
                .map_err(|e| step("writing postgresql.conf", e))?;
        }
        cluster.pg_start()?;
        cluster.watch_parent();
        Ok(cluster)
    }

    /// Starts a stopped (or killed) cluster again on its port, so the URLs
    /// handed out before still reach it: a database that comes back.
    pub fn restart(&mut self) -> Result<(), ClusterError> {
        self.pg_start_on(Some(self.port))
    }

    /// Starts the server on a free port (tries a few).
    fn pg_start(&mut self) -> Result<(), ClusterError> {
        self.pg_start_on(None)
    }

    /// Starts the server on `port`, or on a free port (tries a few).
    fn pg_start_on(&mut self, port: Option<u16>) -> Result<(), ClusterError> {
        let cluster = self;
        let data = cluster.data_dir();
        for attempt in 0..5 {
            cluster.port = port.unwrap_or_else(free_port);
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB",
                cluster.port,
                cluster.dir.path().display()
            );
            let log = cluster.dir.path().join("server.log");
            let started = cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    &data.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    &options,
                    "start",
                ],
            );
            match started {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 4 => return Err(e),
                Err(_) => continue,
            }
        }
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the cluster's programs (as `postgres` when we are root).
    fn run(&self, program: &str, args: &[&str]) -> Result<(), ClusterError> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step(program, e))?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            return Err(ClusterError::Step {
                step: program.to_owned(),
                detail: format!(
                    "{}{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    log
                ),
            });
        }
        Ok(())
    }

    /// Stops the cluster when this process ends, however it ends: a small shell
    /// that waits for our pid to disappear.
    fn watch_parent(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            runuser = if self.as_postgres { "runuser -u postgres -- " } else { "" },
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.path().display(),
        );
        let _ = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, log, socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=pls dbname={name} connect_timeout=10",
            self.port
        )
    }

    /// A new empty database; returns its connection string.
    pub fn create_database(&self) -> Result<String, ClusterError> {
        let name = self.create_database_named()?;
        Ok(self.url(&name))
    }

    /// A new empty database; returns its name.
    pub fn create_database_named(&self) -> Result<String, ClusterError> {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
            .map_err(|e| step("connecting to the cluster", e))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| step("CREATE DATABASE", e))?;
        Ok(name)
    }

    /// Stops the server at once, as a crash would (`pg_ctl -m immediate`).
    pub fn kill(&self) -> Result<(), ClusterError> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data_dir().to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ],
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn step(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Step {
        step: what.to_owned(),
        detail: e.to_string(),
    }
}

/// One cluster per process, started on first use (each test takes its own
/// database in it).
pub fn shared() -> &'static Cluster {
    static CLUSTER: std::sync::OnceLock<Cluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().expect("starting the throwaway PostgreSQL cluster"))
}
