//! Backup, restore, upgrade and rollback (issue 9), over the schema-1 fixture in
//! `portal/tests/fixtures/v1` (written by the schema-1 code, see its README) and
//! with real `pls` processes where the procedure runs them.

use keys::{Binding, Driver, HardwareId, SigningKeyPair, TrustedKeys, UnixTime};
use portal::domain::MutationState;
use portal::mail::Mailer;
use portal::store::{OpenError, Store, SCHEMA_VERSION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::search::{assert_search_agrees, numbers, schema1_search};
use crate::util::{fails, ok, pls};

/// The trees a backup holds (store.rs `TREES`).
const BACKED_UP: [&str; 11] = [
    "meta",
    "accounts",
    "accounts_by_email",
    "licenses",
    "licenses_by_account",
    "mutations",
    "grants",
    "audit",
    "audit_by_license",
    "checkins",
    "checkin_history",
];

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

/// A backup's entries: (tree, key hex) -> value line, without header and trailer.
fn backup_entries(path: &Path) -> BTreeMap<(String, String), serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("read backup");
    let mut out = BTreeMap::new();
    for line in text.lines().skip(1) {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        if v.get("end").is_some() {
            break;
        }
        let key = (
            v["t"].as_str().expect("tree").to_owned(),
            v["k"].as_str().expect("key").to_owned(),
        );
        out.insert(key, v);
    }
    out
}

const SCHEMA_KEY_HEX: &str = "736368656d615f76657273696f6e";

/// Every record of `store`, through a fresh backup, must be the fixture's:
/// byte for byte, except the schema version.
fn assert_records_are_the_fixtures(store: &Store, dir: &Path) {
    let path = dir.join(format!("check-{}.backup", rand::random::<u32>()));
    store.backup_to(&path, UnixTime(0)).expect("backup");
    let mut now = backup_entries(&path);
    let mut then = backup_entries(&fixture().join("store.backup"));
    let version = |m: &mut BTreeMap<(String, String), serde_json::Value>| {
        m.remove(&("meta".to_owned(), SCHEMA_KEY_HEX.to_owned()))
            .expect("schema version entry")
    };
    assert_eq!(version(&mut then)["v"], "\u{0}\u{0}\u{0}\u{1}");
    assert_eq!(
        version(&mut now)["v"].as_str().expect("text").as_bytes(),
        SCHEMA_VERSION.to_be_bytes()
    );
    assert_eq!(now.len(), then.len(), "entry count");
    for (k, v) in &then {
        assert_eq!(now.get(k), Some(v), "entry {k:?}");
    }
}

/// Opens the store, waiting out the moment sled still holds the lock of a handle
/// dropped just before.
fn open(db: &Path) -> Store {
    for _ in 0..250 {
        match Store::open(db) {
            Err(OpenError::Locked { .. }) => std::thread::sleep(Duration::from_millis(20)),
            other => return other.expect("open"),
        }
    }
    panic!("{} stays locked", db.display());
}

fn raw(db: &Path) -> sled::Db {
    for _ in 0..250 {
        match sled::open(db) {
            Ok(d) => return d,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    panic!("{} stays locked", db.display());
}

/// Every key and value of the backed-up trees, read with sled itself.
fn raw_trees(db: &Path) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let d = raw(db);
    let mut out = BTreeMap::new();
    for t in BACKED_UP {
        for kv in d.open_tree(t).expect("tree").iter() {
            let (k, v) = kv.expect("entry");
            out.insert((t.to_owned(), k.to_vec()), v.to_vec());
        }
    }
    out
}

/// Entries in the search index (0 where the tree does not exist).
fn index_entries(db: &Path) -> usize {
    let d = raw(db);
    if !d
        .tree_names()
        .iter()
        .any(|n| n.as_ref() == b"license_search")
    {
        return 0;
    }
    d.open_tree("license_search").expect("tree").len()
}

/// The one license whose search finds `q`.
fn one(store: &Store, q: &str) -> portal::domain::License {
    let found = store.search_licenses(q).expect("search");
    assert_eq!(found.len(), 1, "{q:?}: {:?}", numbers(found.clone()));
    found.into_iter().next().expect("one")
}

/// The fixture's content, checked value by value on a migrated store.
fn assert_fixture_content(store: &Store, dir: &Path) {
    assert_eq!(store.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    assert_eq!(store.accounts().expect("accounts").len(), 4);
    assert_eq!(store.license_count(), 6);
    let alpha = store
        .account_by_email("Einkauf@alpha-gebaeude.ch")
        .expect("read")
        .expect("alpha");
    assert!(alpha.trusted && alpha.email_verified);
    assert_eq!(alpha.company, "Alpha Gebäudetechnik AG");
    let trusted = TrustedKeys::with([SigningKeyPair::from_seed(&[9; 32]).public()]);

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

    assert_records_are_the_fixtures(store, dir);
}

#[test]
fn the_schema_1_store_migrates_on_open_intact_and_a_second_open_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = v1_db_copy(dir.path());
    assert_eq!(Store::schema_version_at(&db).expect("read"), Some(1));
    {
        let store = open(&db);
        assert_eq!(store.migrated_from(), Some(1));
        assert_fixture_content(&store, dir.path());
        // The queued emails (web trees, outside the schema) are still queued.
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
    let before = raw_trees(&db);
    let index: Vec<_> = {
        let d = raw(&db);
        let t = d.open_tree("license_search").expect("index");
        t.iter().map(|kv| kv.expect("entry").0.to_vec()).collect()
    };
    assert!(index.len() > 300, "{} index entries", index.len());
    let store = open(&db);
    assert_eq!(
        store.migrated_from(),
        None,
        "nothing to migrate the second time"
    );
    assert_eq!(store.schema_version().expect("version"), 2);
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    drop(store);
    assert_eq!(raw_trees(&db), before);
    let d = raw(&db);
    let again: Vec<_> = d
        .open_tree("license_search")
        .expect("index")
        .iter()
        .map(|kv| kv.expect("entry").0.to_vec())
        .collect();
    assert_eq!(again, index);
}

#[test]
fn an_interrupted_migration_runs_again_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = v1_db_copy(dir.path());
    {
        // What a migration killed half-way leaves: version 1, a partial index
        // with an entry that belongs to nothing.
        let d = raw(&db);
        let t = d.open_tree("license_search").expect("index");
        t.insert(b"\x03zzz0000000000", &[]).expect("insert");
        t.insert(b"\x03tie0000000000", &[]).expect("insert");
        d.flush().expect("flush");
    }
    let store = open(&db);
    assert_eq!(store.migrated_from(), Some(1));
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    assert_eq!(assert_search_agrees(&store, "tiefenau"), 1);
    assert!(store.search_licenses("zzz").expect("search").is_empty());
}

#[test]
fn the_schema_1_backup_restores_migrated_or_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = fixture().join("store.backup");
    // Restore on the new pls: migrated.
    let db = dir.path().join("restored");
    let summary = Store::restore(&backup, &db).expect("restore");
    assert_eq!((summary.schema_version, summary.licenses), (1, 6));
    assert_eq!(Store::schema_version_at(&db).expect("read"), Some(2));
    let store = open(&db);
    assert_eq!(store.migrated_from(), None, "the restore migrated it");
    assert_fixture_content(&store, dir.path());
    drop(store);

    // Restore keeping the schema (rollback): exactly what the schema-1 pls wrote.
    let kept = dir.path().join("kept");
    let summary = Store::restore_keeping_schema(&backup, &kept).expect("restore");
    assert_eq!(summary.schema_version, 1);
    assert_eq!(Store::schema_version_at(&kept).expect("read"), Some(1));
    let original = v1_db_copy(&dir.path().join("original"));
    assert_eq!(raw_trees(&kept), raw_trees(&original));
    assert_eq!(index_entries(&kept), 0, "schema 1 has no index");

    // A backup of the new schema restores with its index rebuilt.
    let store = open(&kept);
    assert_eq!(store.migrated_from(), Some(1));
    let v2 = dir.path().join("v2.backup");
    let summary = store.backup_to(&v2, UnixTime(1)).expect("backup");
    assert_eq!(summary.schema_version, 2);
    drop(store);
    let text = std::fs::read_to_string(&v2).expect("read");
    assert!(
        !text.contains("license_search"),
        "the index is not backed up"
    );
    let again = dir.path().join("again");
    Store::restore(&v2, &again).expect("restore v2");
    let store = open(&again);
    assert_eq!(store.migrated_from(), None);
    assert_eq!(store.verify().expect("verify"), Vec::<String>::new());
    assert_eq!(assert_search_agrees(&store, "köln"), 3);
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
        assert!(out.contains("schema version 2"), "{out}");
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
    assert!(out.contains("schema version 2"), "{out}");
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
fn upgrade_migrates_on_start_and_rollback_restores_the_schema_1_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    v1_db_copy(&data);
    // Before: the new pls reads the version without changing it.
    let out = ok(&pls(&data, &["admin", "schema"]));
    assert!(
        out.contains("database schema version 1; this pls writes version 2"),
        "{out}"
    );
    assert!(out.contains("migrates"), "{out}");
    assert_eq!(
        Store::schema_version_at(&data.join("db")).expect("read"),
        Some(1)
    );

    // Upgrade: the first start migrates and says so.
    let server = Server::start(&data, "upgraded");
    let log = server.stderr();
    assert!(log.contains("migrating schema 1 → 2"), "{log}");
    let out = ok(&pls(&data, &["admin", "schema"]));
    assert!(
        out.contains("database schema version 2") && out.contains("up to date"),
        "{out}"
    );
    assert!(ok(&pls(&data, &["admin", "verify"])).contains("database consistent: 6 licenses"));
    // A write after the upgrade (lost by the rollback below, as documented).
    let json: serde_json::Value = serde_json::from_str(&ok(&pls(&data, CREATE))).expect("json");
    let after_upgrade = json["license"]["number"]
        .as_str()
        .expect("number")
        .to_owned();
    let (_, log) = server.stop();
    assert_eq!(log.matches("migrating schema").count(), 1, "{log}");
    // The queued emails of the schema-1 store were delivered to the outbox.
    let emails = std::fs::read_dir(data.join("outbox"))
        .expect("outbox")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    assert!(emails >= 2, "{emails} emails in the outbox");
    // A second start has nothing to migrate.
    let server = Server::start(&data, "again");
    assert!(ok(&pls(&data, &["admin", "schema"])).contains("up to date"));
    let (_, log) = server.stop();
    assert!(!log.contains("migrating schema"), "{log}");

    // Rollback: restore the pre-upgrade backup as it was (schema 1), for the
    // previous pls; the database of the upgraded one is kept aside.
    let backup = fixture().join("store.backup");
    let out = ok(&pls(
        &data,
        &[
            "admin",
            "restore",
            "--keep-schema",
            backup.to_str().expect("path"),
        ],
    ));
    assert!(out.contains("schema version 1"), "{out}");
    assert!(!out.contains("migrated"), "{out}");
    assert!(ok(&pls(&data, &["admin", "schema"])).contains("database schema version 1"));
    let original = v1_db_copy(&dir.path().join("original"));
    assert_eq!(raw_trees(&data.join("db")), raw_trees(&original));
    assert_eq!(index_entries(&data.join("db")), 0, "schema 1 has no index");
    let aside = std::fs::read_dir(&data)
        .expect("ls")
        .filter_map(|e| e.ok())
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("db.before-restore-")
        })
        .expect("the upgraded database is kept aside");
    assert_eq!(
        Store::schema_version_at(&aside.path()).expect("read"),
        Some(2)
    );

    // Without --keep-schema the same backup comes back migrated.
    let other = dir.path().join("other");
    let out = ok(&pls(
        &other,
        &["admin", "restore", backup.to_str().expect("path")],
    ));
    assert!(out.contains("migrated from schema version 1 to 2"), "{out}");
    let numbers = license_numbers(&other);
    assert_eq!(numbers.len(), 6);
    assert!(!numbers.contains(&after_upgrade));
}

#[test]
fn a_database_or_backup_newer_than_this_pls_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let newer = SCHEMA_VERSION + 1;
    {
        let store = Store::open(&data.join("db")).expect("create");
        store.flush().expect("flush");
        drop(store);
        let d = raw(&data.join("db"));
        d.open_tree("meta")
            .expect("meta")
            .insert("schema_version", &newer.to_be_bytes())
            .expect("insert");
        d.flush().expect("flush");
    }
    let expected = format!(
        "has schema version {newer}, newer than this pls ({SCHEMA_VERSION}); use a newer pls"
    );
    let err = fails(&pls(&data, &["serve"]));
    assert!(err.contains(&expected), "{err}");
    let err = fails(&pls(&data, &["admin", "list"]));
    assert!(err.contains(&expected), "{err}");
    let out = ok(&pls(&data, &["admin", "schema"]));
    assert!(out.contains("newer than this pls"), "{out}");

    // A backup of a newer schema (well-formed, checksum and all) is refused
    // before anything is written.
    let good = dir.path().join("good.backup");
    let current = dir.path().join("current");
    Store::restore(&fixture().join("store.backup"), &current).expect("restore");
    let store = open(&current);
    store.backup_to(&good, UnixTime(0)).expect("backup");
    drop(store);
    let text = std::fs::read_to_string(&good).expect("read");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[0] = lines[0].replace(
        &format!("\"schema_version\":{SCHEMA_VERSION}"),
        &format!("\"schema_version\":{newer}"),
    );
    let body: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(body.as_bytes()));
    let trailer = serde_json::json!({"end": true, "entries": lines.len() - 2, "sha256": digest});
    let forged = dir.path().join("newer.backup");
    std::fs::write(&forged, format!("{body}{trailer}\n")).expect("write");
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
    assert!(!target.join("db").exists(), "nothing written");
}
