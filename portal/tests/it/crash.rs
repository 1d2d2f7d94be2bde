//! Crash safety: a writer process is killed with SIGKILL at random moments, many
//! times over the same database; after every kill the store must open, be
//! consistent, and hold every write the writer acknowledged (it acknowledges only
//! after the write returned, which is after its flush).

use portal::store::Store;
use rand::{Rng, SeedableRng};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

const KILLS: usize = 24;

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let seed: u64 = rand::random();
    println!("crash test seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut created: Vec<String> = vec![];
    let mut paid: Vec<String> = vec![];
    for round in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pls"))
            .args(["--data-dir"])
            .arg(&data)
            .arg("__crash-writer")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        // Between 20 ms (often during sled's recovery of the previous crash) and
        // 300 ms (tens of writes in).
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..300)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read acks");
        // Only complete lines count: a line cut by the kill was never acknowledged.
        for line in out.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["ack", "license", n] => created.push(n.to_string()),
                ["ack", "paid", n] => paid.push(n.to_string()),
                other => panic!("unexpected writer output {other:?}"),
            }
        }
        let store = Store::open(&data.join("db"))
            .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
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
    assert!(
        !paid.is_empty(),
        "the writer never got a write done between kills"
    );
}
