//! Crash safety: a writer process is killed with SIGKILL at random moments, many
//! times over the same database; after every kill the store must open, be
//! consistent, and hold every write the writer acknowledged (it acknowledges only
//! after the write returned, which is after its commit reached the disk). The
//! writer creates a license with its first order in one transaction, then
//! activates it.

use portal::store::Store;
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const KILLS: usize = 24;

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = data.join(portal::store::DB_FILE);
    crash_rounds(&data, None, || Store::open(&db));
}

/// The same on PostgreSQL: the writer is `pls` with `PLS_DATABASE_URL` set, a
/// database of the throwaway cluster.
#[test]
fn every_acknowledged_write_survives_sigkill_on_postgres() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let url = portal::store::throwaway::shared()
        .create_database()
        .expect("database");
    crash_rounds(&data, Some(&url), || Store::open_url(&url));
}

fn crash_rounds(
    data: &std::path::Path,
    url: Option<&str>,
    open: impl Fn() -> Result<Store, portal::store::OpenError>,
) {
    let seed: u64 = rand::random();
    println!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut created: Vec<String> = vec![];
    let mut paid: Vec<String> = vec![];
    for round in 0..KILLS {
        let mut writer = Command::new(env!("CARGO_BIN_EXE_pls"));
        if let Some(url) = url {
            writer.env("PLS_DATABASE_URL", url);
        }
        let mut child = writer
            .args(["--data-dir"])
            .arg(data)
            .arg("__crash-writer")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // Only complete lines count: a line cut by the kill was never acknowledged.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            loop {
                let mut line = vec![];
                match r.read_until(b'\n', &mut line) {
                    Ok(_) if line.ends_with(b"\n") => {
                        let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                    }
                    _ => break,
                }
            }
        });
        let mut lines = vec![];
        if round % 2 == 0 {
            // Any moment from the start, often while SQLite recovers the
            // previous crash's write-ahead log.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
        } else {
            // A moment in the middle of the stream of writes, however slow the
            // machine is today.
            lines.push(
                rx.recv_timeout(Duration::from_secs(120))
                    .expect("the writer acknowledges a write"),
            );
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..100)));
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        lines.extend(rx.try_iter());
        for line in &lines {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["ack", "license", n] => created.push(n.to_string()),
                ["ack", "paid", n] => paid.push(n.to_string()),
                other => panic!("unexpected writer output {other:?}"),
            }
        }
        let store = open().unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
        let problems = store.verify().expect("verify");
        assert!(
            problems.is_empty(),
            "round {round} (seed {seed}): {problems:?}"
        );
        for n in &created {
            let number = n.parse().expect("number");
            assert!(
                store.license(&number).expect("read").is_some(),
                "round {round} (seed {seed}): license {n} lost"
            );
        }
        for n in &paid {
            let number = n.parse().expect("number");
            let l = store.license(&number).expect("read").expect("license");
            assert!(
                portal::domain::is_active(&l),
                "round {round} (seed {seed}): activation of {n} lost"
            );
        }
    }
    println!(
        "{} creations and {} activations acknowledged over {KILLS} kills",
        created.len(),
        paid.len()
    );
    // Every other round waits for a first acknowledgement before it kills.
    assert!(created.len() >= KILLS / 2, "too few acknowledged writes");
}
