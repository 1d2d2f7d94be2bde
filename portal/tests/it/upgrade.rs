//! Moving an installation from the old sled store to SQL (`pls admin
//! import-sled`, issue 14), over the schema-1 fixture in
//! `portal/tests/fixtures/v1` (written by the schema-1 code, see its README) and
//! a schema-2 sled store made from it here; and backup and restore of the SQL
//! store with real `pls` processes.
//!
//! Issue 9's sled migration tests (schema 1 -> 2 on open, interrupted migration,
//! rollback to the schema-1 store) became the import tests: the SQL store is
//! never migrated from sled in place, it is filled from it.

use keys::{Binding, Driver, HardwareId, SigningKeyPair, TrustedKeys, UnixTime};
use portal::domain::{Account, AuditEntry, CheckIn, License, MutationState};
use portal::mail::Mailer;
use portal::store::{BackupError, Store, DB_FILE, SCHEMA_VERSION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::search::{assert_search_agrees, numbers, schema1_search};
use crate::util::{fails, ok, pls};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

/// A copy of the schema-1 sled directory (tests never touch the fixture itself).
fn v1_db_copy(dir: &Path) -> PathBuf {
    let db = dir.join("db");
    std::fs::create_dir_all(&db).expect("mkdir");
    for entry in std::fs::read_dir(fixture().join("db")).expect("fixture db") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), db.join(entry.file_name())).expect("copy");
    }
    db
}

/// The records of a sled store, read with sled itself (not with the importer).
#[derive(Debug, PartialEq)]
struct SledRecords {
    accounts: Vec<Account>,
    licenses: Vec<License>,
    /// Per license: its mutations, grants (as JSON), check-in history.
    mutations: BTreeMap<String, Vec<portal::domain::Mutation>>,
    grants: BTreeMap<String, Vec<serde_json::Value>>,
    history: BTreeMap<String, Vec<CheckIn>>,
    checkins: Vec<CheckIn>,
    audit: Vec<AuditEntry>,
}

/// Opens a sled directory, waiting out the moment sled still holds the lock of
/// a handle dropped just before.
fn sled_open(db: &Path) -> sled::Db {
    for _ in 0..250 {
        match sled::open(db) {
            Ok(d) => return d,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("{} stays locked", db.display());
}

fn json<T: serde::de::DeserializeOwned>(v: &[u8]) -> T {
    serde_json::from_slice(v).expect("json")
}

fn sled_records(db: &Path) -> SledRecords {
    let d = sled_open(db);
    let tree = |name: &str| -> Vec<(Vec<u8>, Vec<u8>)> {
        d.open_tree(name)
            .expect("tree")
            .iter()
            .map(|kv| {
                let (k, v) = kv.expect("entry");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    };
    let prefix = |k: &[u8]| String::from_utf8(k[..10].to_vec()).expect("number");
    let mut r = SledRecords {
        accounts: tree("accounts").iter().map(|(_, v)| json(v)).collect(),
        licenses: tree("licenses").iter().map(|(_, v)| json(v)).collect(),
        mutations: BTreeMap::new(),
        grants: BTreeMap::new(),
        history: BTreeMap::new(),
        checkins: tree("checkins").iter().map(|(_, v)| json(v)).collect(),
        audit: tree("audit").iter().map(|(_, v)| json(v)).collect(),
    };
    for (k, v) in tree("mutations") {
        r.mutations.entry(prefix(&k)).or_default().push(json(&v));
    }
    for (k, v) in tree("grants") {
        r.grants.entry(prefix(&k)).or_default().push(json(&v));
    }
    for (k, v) in tree("checkin_history") {
        r.history.entry(prefix(&k)).or_default().push(json(&v));
    }
    r
}

/// The same records, read from the SQL store through its public methods.
fn sql_records(store: &Store) -> SledRecords {
    let licenses = store.licenses().expect("licenses");
    let mut r = SledRecords {
        accounts: store.accounts().expect("accounts"),
        licenses: licenses.clone(),
        mutations: BTreeMap::new(),
        grants: BTreeMap::new(),
        history: BTreeMap::new(),
        checkins: vec![],
        audit: store.audit(None, usize::MAX).expect("audit"),
    };
    for l in &licenses {
        let n = l.number.to_string();
        let ms = store.mutations(&l.number).expect("mutations");
        if !ms.is_empty() {
            r.mutations.insert(n.clone(), ms);
        }
        let gs: Vec<serde_json::Value> = store
            .grants(&l.number)
            .expect("grants")
            .iter()
            .map(|g| serde_json::to_value(g).expect("json"))
            .collect();
        if !gs.is_empty() {
            r.grants.insert(n.clone(), gs);
        }
        let hs = store.check_in_history(&l.number).expect("history");
        if !hs.is_empty() {
            r.history.insert(n.clone(), hs);
        }
        if let Some(c) = store.last_check_in(&l.number).expect("last") {
            r.checkins.push(c);
        }
    }
    r
}

/// Imports `source` into a new SQL store in `dir` and opens it.
fn import(source: &Path, dir: &Path) -> Store {
    let db = dir.join(DB_FILE);
    portal::import_sled::import(source, &db).expect("import");
    Store::open(&db).expect("open")
}

/// The one license whose search finds `q`.
fn one(store: &Store, q: &str) -> portal::domain::License {
    let found = store.search_licenses(q).expect("search");
    assert_eq!(found.len(), 1, "{q:?}: {:?}", numbers(found.clone()));
    found.into_iter().next().expect("one")
}

/// The fixture's content, checked value by value on a migrated store.
fn assert_fixture_content(store: &Store) {
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    assert_eq!(store.accounts().expect("accounts").len(), 4);
    assert_eq!(store.license_count().expect("count"), 6);
    let alpha = store
        .account_by_email("Einkauf@alpha-gebaeude.ch")
        .expect("read")
        .expect("alpha");
    assert!(alpha.trusted && alpha.email_verified);
    assert_eq!(alpha.company, "Alpha Gebäudetechnik AG");
    let trusted = TrustedKeys::with([SigningKeyPair::from_seed(&[9; 32]).public()]);
    assert_eq!(
        store.verify_grants(&trusted).expect("verify grants"),
        Vec::<String>::new()
    );

    let l1 = one(store, "tiefenau");
    assert_eq!(l1.account, Some(alpha.id));
    assert_eq!(
        l1.binding,
        Some(Binding::HardwareId(HardwareId::from_bytes([0x11; 16])))
    );
    assert_eq!(l1.entitlements.driver(Driver::Modbus), 10_010);
    let states: Vec<_> = store
        .mutations(&l1.number)
        .expect("mutations")
        .iter()
        .map(|m| m.state)
        .collect();
    assert_eq!(states, [MutationState::Activated, MutationState::Quote]);
    let last = store
        .last_check_in(&l1.number)
        .expect("read")
        .expect("checked in");
    assert!(!last.running);
    assert_eq!(last.daemon_version, "1.0.1");
    assert_eq!(
        store.check_in_history(&l1.number).expect("history").len(),
        2
    );
    let grant = store
        .current_grant(&l1)
        .expect("read")
        .expect("bound: a grant");
    trusted
        .verify(&grant)
        .expect("the grant still verifies with the fixture key");
    assert_eq!(one(store, "111111111111").number, l1.number, "by host");

    let l2 = one(store, "hd-2026-000417");
    assert_eq!(
        l2.dongle_serial.map(|s| s.to_string()).as_deref(),
        Some("HD-2026-000417")
    );
    let l3 = one(store, "rheinblick");
    let ordered = store
        .mutations_in_state(MutationState::Ordered)
        .expect("ordered");
    assert_eq!(ordered.len(), 1);
    assert_eq!(ordered[0].license, l3.number);
    let l4 = one(store, "deutz");
    let states: Vec<_> = store
        .mutations(&l4.number)
        .expect("mutations")
        .iter()
        .map(|m| m.state)
        .collect();
    assert_eq!(
        states,
        [
            MutationState::Activated,
            MutationState::Activated,
            MutationState::Expired,
            MutationState::Deleted
        ]
    );
    assert_eq!(l4.binding, None);
    assert_eq!(l4.released_hosts, vec![HardwareId::from_bytes([0x44; 16])]);
    assert!(store
        .audit(Some(&l4.number), 100)
        .expect("audit")
        .iter()
        .any(|e| e.action == "binding.reset"));
    let l5 = one(store, "engineering notebook");
    assert!(l5.valid_until.is_some() && l5.binding.is_none());
    let l6 = one(store, "showroom zürich-west");
    assert_eq!(l6.account, None);
    assert_eq!(l6.license_data.name, "Showroom Zürich-West");

    // The index answers what the scan answers: every trigram and longer piece of
    // every searchable field, and some misses.
    let emails: BTreeMap<_, _> = store
        .accounts()
        .expect("accounts")
        .into_iter()
        .map(|a| (a.id, a.email))
        .collect();
    let mut queries = BTreeSet::new();
    for l in store.licenses().expect("licenses") {
        let email = l
            .account
            .and_then(|a| emails.get(&a))
            .cloned()
            .unwrap_or_default();
        for f in portal::search::fields(&l, &email) {
            let cs: Vec<char> = f.chars().collect();
            for len in [1, 2, 3, 5, 8] {
                for w in cs.windows(len) {
                    queries.insert(w.iter().collect::<String>());
                }
            }
            queries.insert(f);
        }
    }
    queries.extend(["zzz", "müller x", "", "BERN"].map(String::from));
    let mut hits = 0;
    for q in &queries {
        hits += assert_search_agrees(store, q);
    }
    assert!(
        queries.len() > 500 && hits > queries.len(),
        "{} queries, {hits} hits",
        queries.len()
    );
    assert_eq!(store.search_licenses("müller").expect("search").len(), 3);
    // The one thing that changed on purpose: text with a quote is found now.
    assert_eq!(
        store
            .search_licenses("söhne \"beta\"")
            .expect("search")
            .len(),
        3
    );
    assert!(schema1_search(store, "söhne \"beta\"").is_empty());
}

// ----- with the pls binary --------------------------------------------------------

/// A running `pls serve`; stdout and stderr go to files in the data directory's
/// parent.
struct Server {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Server {
    fn start(data: &Path, name: &str) -> Server {
        let parent = data.parent().expect("parent");
        let out = parent.join(format!("{name}.stdout"));
        let err = parent.join(format!("{name}.stderr"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pls"))
            .arg("--data-dir")
            .arg(data)
            .arg("serve")
            .env("PLS_QUIC_LISTEN", "127.0.0.1:0")
            .env("PLS_HTTP_LISTEN", "127.0.0.1:0")
            .env("PLS_METRICS_LISTEN", "127.0.0.1:0")
            .env("PLS_LOG", "info")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn pls serve");
        let socket = data.join("admin.sock");
        for _ in 0..1200 {
            if socket.exists() {
                return Server { child, out, err };
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "pls serve ended ({status}): {}",
                    std::fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("pls serve did not create its admin socket");
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap_or_default()
    }

    /// SIGTERM; returns (stdout, stderr) after a clean exit.
    fn stop(mut self) -> (String, String) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(exit.success(), "clean exit: {exit:?}");
        (
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            self.stderr(),
        )
    }
}

fn public_key_line(text: &str) -> String {
    text.lines()
        .find(|l| l.contains("promos-ed25519-public:"))
        .unwrap_or_else(|| panic!("no public key in {text}"))
        .trim()
        .to_owned()
}

fn license_numbers(data: &Path) -> BTreeSet<String> {
    let list: serde_json::Value =
        serde_json::from_str(&ok(&pls(data, &["admin", "--json", "list"]))).expect("json");
    list.as_array()
        .or_else(|| list["licenses"].as_array())
        .expect("list")
        .iter()
        .map(|l| l["number"].as_str().expect("number").to_owned())
        .collect()
}

const CREATE: &[&str] = &[
    "admin",
    "--json",
    "create-license",
    "--type",
    "standard",
    "--company",
    "Backup Test AG",
    "--first-name",
    "Bea",
    "--last-name",
    "Backup",
    "--data-name",
    "Live Site",
    "--data-postcode",
    "3000",
    "--data-city",
    "Bern",
    "--paid",
];

/// The files a new machine needs besides the database (README: "Operating").
const IDENTITY_FILES: [&str; 4] = [
    "signing.key",
    "signing.pub",
    "quic-cert.der",
    "quic-key.der",
];

#[test]
fn a_backup_taken_while_the_server_writes_restores_on_a_new_machine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old-machine");
    let server = Server::start(&old, "old");
    // Two writers create and activate licenses through the running server while
    // backups are taken; each records the numbers whose command returned.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let (acked, stop, old) = (acked.clone(), stop.clone(), old.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let json: serde_json::Value =
                        serde_json::from_str(&ok(&pls(&old, CREATE))).expect("json");
                    let n = json["license"]["number"].as_str().expect("number");
                    acked.lock().expect("lock").push(n.to_owned());
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        for _ in 0..1200 {
            if acked.lock().expect("lock").len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("the writers did not get to {n} licenses");
    };
    let mut backups = vec![];
    for (i, target) in [2, 5, 8].into_iter().enumerate() {
        wait_for(target);
        let before: BTreeSet<String> = acked.lock().expect("lock").iter().cloned().collect();
        let file = dir.path().join(format!("live-{i}.backup"));
        let out = ok(&pls(
            &old,
            &["admin", "backup", file.to_str().expect("path")],
        ));
        assert!(
            out.contains(&format!("schema version {SCHEMA_VERSION}")),
            "{out}"
        );
        backups.push((file, before));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.join().expect("writer");
    }
    let all: BTreeSet<String> = acked.lock().expect("lock").iter().cloned().collect();
    assert_eq!(license_numbers(&old), all);
    let (old_stdout, _) = server.stop();
    let old_identity = ok(&pls(&old, &["admin", "identity"]));
    assert_eq!(public_key_line(&old_stdout), public_key_line(&old_identity));

    // Each backup is one consistent moment: it restores, verifies, and holds every
    // license acknowledged before it started, and only licenses that exist.
    for (i, (file, before)) in backups.iter().enumerate() {
        let data = dir.path().join(format!("check-{i}"));
        // The identity comes along: `verify` checks every grant with its key.
        std::fs::create_dir_all(&data).expect("mkdir");
        for f in IDENTITY_FILES {
            std::fs::copy(old.join(f), data.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
        }
        ok(&pls(
            &data,
            &["admin", "restore", file.to_str().expect("path")],
        ));
        assert!(ok(&pls(&data, &["admin", "verify"])).contains("database consistent"));
        let restored = license_numbers(&data);
        assert!(
            restored.is_superset(before),
            "backup {i} lost acknowledged licenses"
        );
        assert!(
            restored.is_subset(&all),
            "backup {i} has licenses nobody made"
        );
    }

    // The new machine: the identity files copied once, the last backup restored.
    let (file, before) = backups.last().expect("backups");
    let new = dir.path().join("new-machine");
    std::fs::create_dir_all(&new).expect("mkdir");
    for f in IDENTITY_FILES {
        std::fs::copy(old.join(f), new.join(f)).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    let out = ok(&pls(
        &new,
        &["admin", "restore", file.to_str().expect("path")],
    ));
    assert!(
        out.contains(&format!("schema version {SCHEMA_VERSION}")),
        "{out}"
    );
    let server = Server::start(&new, "new");
    let number = before.iter().next().expect("a license");
    assert!(ok(&pls(&new, &["admin", "show", number])).contains("Live Site"));
    assert!(ok(&pls(&new, &["admin", "schema"])).contains("up to date"));
    let (new_stdout, _) = server.stop();
    assert!(
        !new_stdout.contains("promos-ed25519-public:"),
        "the copied identity is used, not a new one: {new_stdout}"
    );
    // Key, key id and certificate fingerprint; not the certificate's path.
    let keys_of = |notice: &str| -> Vec<String> {
        notice
            .lines()
            .filter(|l| !l.contains("QUIC certificate:"))
            .map(String::from)
            .collect()
    };
    let new_identity = ok(&pls(&new, &["admin", "identity"]));
    assert!(
        new_identity.contains("certificate SHA-256"),
        "{new_identity}"
    );
    assert_eq!(
        keys_of(&new_identity),
        keys_of(&old_identity),
        "same key and certificate: daemons keep trusting the new machine"
    );
}

#[test]
fn the_schema_1_sled_directory_imports_with_every_record_equal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled_db = v1_db_copy(dir.path());
    let expected = sled_records(&sled_db);
    assert_eq!(expected.licenses.len(), 6);
    let store = import(&sled_db, &dir.path().join("sql"));
    assert_eq!(store.migrated_from(), None);
    assert_eq!(sql_records(&store), expected);
    assert_fixture_content(&store);
    // The queued emails (web trees) are still queued.
    let mailer = Mailer::new(
        &Arc::new(store),
        "PLS <pls@example.com>",
        None,
        dir.path().join("outbox"),
        Arc::new(keys::SystemClock),
    )
    .expect("mailer");
    assert_eq!(mailer.queue_len(), 2);
}

#[test]
fn the_schema_1_backup_file_imports_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let expected = sled_records(&v1_db_copy(dir.path()));
    let store = import(&fixture().join("store.backup"), &dir.path().join("sql"));
    assert_eq!(sql_records(&store), expected);
    assert_fixture_content(&store);
}

#[test]
fn a_schema_2_sled_store_imports_the_same_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled_db = v1_db_copy(dir.path());
    let expected = sled_records(&sled_db);
    {
        // What the schema-2 pls made of it: version 2 and the trigram index
        // (`license_search`: length, trigram, number), which the import ignores.
        let d = sled_open(&sled_db);
        let index = d.open_tree("license_search").expect("index");
        for l in &expected.licenses {
            for f in portal::search::fields(l, "") {
                let cs: Vec<char> = f.chars().collect();
                for w in cs.windows(3) {
                    let g: String = w.iter().collect();
                    let mut k = vec![g.len() as u8];
                    k.extend_from_slice(g.as_bytes());
                    k.extend_from_slice(l.number.as_str().as_bytes());
                    index.insert(k, &[]).expect("insert");
                }
            }
        }
        d.open_tree("meta")
            .expect("meta")
            .insert("schema_version", &2u32.to_be_bytes())
            .expect("v2");
        d.flush().expect("flush");
    }
    let sql = dir.path().join("sql");
    std::fs::create_dir_all(&sql).expect("mkdir");
    let summary = portal::import_sled::import(&sled_db, &sql.join(DB_FILE)).expect("import");
    assert_eq!((summary.schema_version, summary.licenses), (2, 6));
    let store = Store::open(&sql.join(DB_FILE)).expect("open");
    assert_eq!(sql_records(&store), expected);
    assert_fixture_content(&store);
}

#[test]
fn an_import_refuses_a_target_with_data_and_unknown_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled_db = v1_db_copy(dir.path());
    let db = dir.path().join(DB_FILE);
    portal::import_sled::import(&sled_db, &db).expect("first import");
    let before = sql_records(&Store::open(&db).expect("open"));
    let err = portal::import_sled::import(&fixture().join("store.backup"), &db)
        .expect_err("a second import is refused");
    assert!(matches!(err, BackupError::TargetNotEmpty(_)), "{err}");
    assert_eq!(
        sql_records(&Store::open(&db).expect("open")),
        before,
        "nothing changed"
    );

    // A sled store of a schema this reader does not know, and a damaged backup.
    {
        let d = sled_open(&sled_db);
        d.open_tree("meta")
            .expect("meta")
            .insert("schema_version", &3u32.to_be_bytes())
            .expect("v3");
        d.flush().expect("flush");
    }
    let err = portal::import_sled::import(&sled_db, &dir.path().join("other.sqlite3"))
        .expect_err("schema 3 is refused");
    assert!(err.to_string().contains("sled schema version 3"), "{err}");
    let text = std::fs::read_to_string(fixture().join("store.backup")).expect("read");
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, text.replacen("Tiefenau", "Tiefenbu", 1)).expect("write");
    let err = portal::import_sled::import(&damaged, &dir.path().join("third.sqlite3"))
        .expect_err("a changed backup is refused");
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn serve_points_an_old_installation_to_import_sled_and_serves_it_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    v1_db_copy(&data);
    let err = fails(&pls(&data, &["serve"]));
    assert!(err.contains("pls admin import-sled"), "{err}");
    assert!(!data.join(DB_FILE).exists(), "nothing created");
    let out = ok(&pls(&data, &["admin", "import-sled"]));
    assert!(
        out.contains("6 licenses") && out.contains("sled schema 1"),
        "{out}"
    );
    let out = ok(&pls(&data, &["admin", "schema"]));
    assert!(out.contains("up to date"), "{out}");
    // The fixture's grants are signed with the key of seed [9; 32]; this data
    // directory has its own key, so `verify` reports them (as it should).
    let err = fails(&pls(&data, &["admin", "verify"]));
    assert!(err.contains("grant") && err.contains("PROBLEM"), "{err}");
    let server = Server::start(&data, "imported");
    let json: serde_json::Value = serde_json::from_str(&ok(&pls(&data, CREATE))).expect("json");
    assert!(json["license"]["number"].is_string());
    assert_eq!(license_numbers(&data).len(), 7);
    let (_, log) = server.stop();
    assert!(!log.contains("ERROR"), "{log}");
    // The queued emails of the sled store were delivered to the outbox.
    let emails = std::fs::read_dir(data.join("outbox"))
        .expect("outbox")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    assert!(emails >= 2, "{emails} emails in the outbox");
    let err = fails(&pls(&data, &["admin", "import-sled"]));
    assert!(err.contains("already holds data"), "{err}");
}

#[test]
fn a_database_or_backup_newer_than_this_pls_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let newer = SCHEMA_VERSION + 1;
    let bump = |db: &Path| {
        let c = rusqlite::Connection::open(db).expect("open");
        c.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'future', 0)",
            [i64::from(newer)],
        )
        .expect("insert");
    };
    std::fs::create_dir_all(&data).expect("mkdir");
    drop(Store::open(&data.join(DB_FILE)).expect("create"));
    // A backup made before the bump, to restore later.
    let good = dir.path().join("good.backup");
    Store::open(&data.join(DB_FILE))
        .expect("open")
        .backup_to(&good, UnixTime(0))
        .expect("backup");
    bump(&data.join(DB_FILE));
    let expected = format!(
        "has schema version {newer}, newer than this pls ({SCHEMA_VERSION}); use a newer pls"
    );
    let err = fails(&pls(&data, &["serve"]));
    assert!(err.contains(&expected), "{err}");
    let err = fails(&pls(&data, &["admin", "list"]));
    assert!(err.contains(&expected), "{err}");
    let out = ok(&pls(&data, &["admin", "schema"]));
    assert!(out.contains("newer than this pls"), "{out}");

    // A backup of a newer schema is refused before anything is written.
    let forged = dir.path().join("newer.backup");
    std::fs::copy(&good, &forged).expect("copy");
    bump(&forged);
    let target = dir.path().join("fresh");
    let err = fails(&pls(
        &target,
        &["admin", "restore", forged.to_str().expect("path")],
    ));
    assert!(
        err.contains(&format!(
            "it has schema version {newer}; this pls supports up to {SCHEMA_VERSION}"
        )),
        "{err}"
    );
    assert!(!target.join(DB_FILE).exists(), "nothing written");
    // The old format is pointed to import-sled.
    let err = fails(&pls(
        &target,
        &[
            "admin",
            "restore",
            fixture().join("store.backup").to_str().expect("path"),
        ],
    ));
    assert!(err.contains("import-sled"), "{err}");
}

/// A backup moves between the engines: SQLite -> backup -> restore into
/// PostgreSQL -> backup -> restore into a new SQLite directory, every record
/// equal at each step (compared through `pls admin list --json` and `show`), and
/// the PostgreSQL restore keeps what it replaced in a file.
#[test]
fn a_backup_moves_from_sqlite_to_postgres_and_back() {
    use crate::util::{ok, pls_on};
    let dir = tempfile::tempdir().expect("tempdir");
    let lite = dir.path().join("lite");
    let url = portal::store::throwaway::shared()
        .create_database()
        .expect("database");
    let create = |data: &std::path::Path, db: Option<&str>, company: &str| {
        ok(&pls_on(
            data,
            db,
            &[
                "admin",
                "create-license",
                "--type",
                "standard",
                "--company",
                company,
                "--first-name",
                "Paul",
                "--last-name",
                "Portable",
                "--data-name",
                "Site",
                "--data-postcode",
                "3000",
                "--data-city",
                "Bern",
                "--paid",
            ],
        ))
    };
    for i in 0..4 {
        create(&lite, None, &format!("Portable {i} AG"));
    }
    let listing = |data: &std::path::Path, db: Option<&str>| -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&ok(&pls_on(data, db, &["admin", "--json", "list"])))
                .expect("json");
        let mut shown = vec![];
        for l in list.as_array().expect("list") {
            let n = l["number"].as_str().expect("number");
            let show: serde_json::Value =
                serde_json::from_str(&ok(&pls_on(data, db, &["admin", "--json", "show", n])))
                    .expect("json");
            shown.push(show);
        }
        serde_json::Value::Array(shown)
    };
    let original = listing(&lite, None);
    assert_eq!(original.as_array().map(Vec::len), Some(4));
    let backup = dir.path().join("lite.backup");
    ok(&pls_on(
        &lite,
        None,
        &["admin", "backup", backup.to_str().expect("path")],
    ));

    // Into PostgreSQL (which already holds a license of its own: kept aside).
    let pg_data = dir.path().join("pg");
    create(&pg_data, Some(&url), "Replaced AG");
    let out = ok(&pls_on(
        &pg_data,
        Some(&url),
        &["admin", "restore", backup.to_str().expect("path")],
    ));
    assert!(out.contains("pls-before-restore-"), "{out}");
    let aside = std::fs::read_dir(&pg_data)
        .expect("data dir")
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("pls-before-restore-")
        })
        .expect("the replaced contents are kept")
        .path();
    let kept = portal::store::Store::check_backup(&aside).expect("a usable backup");
    assert_eq!(kept.licenses, 1);
    assert_eq!(
        listing(&pg_data, Some(&url)),
        original,
        "every record equal in PostgreSQL"
    );
    ok(&pls_on(&pg_data, Some(&url), &["admin", "verify"]));

    // And back out of PostgreSQL into a new SQLite directory.
    let pg_backup = dir.path().join("pg.backup");
    ok(&pls_on(
        &pg_data,
        Some(&url),
        &["admin", "backup", pg_backup.to_str().expect("path")],
    ));
    let lite2 = dir.path().join("lite2");
    ok(&pls_on(
        &lite2,
        None,
        &["admin", "restore", pg_backup.to_str().expect("path")],
    ));
    assert_eq!(
        listing(&lite2, None),
        original,
        "every record equal back in SQLite"
    );
    ok(&pls_on(&lite2, None, &["admin", "verify"]));
}
