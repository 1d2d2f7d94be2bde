//! `promos-licd setup`, the first-start dialog, driven through a pseudo-terminal
//! (util-linux `script` gives the dialog a real terminal, so the token prompt
//! does not echo) against real `pls serve` and `promos-licd run` processes, in
//! German and in English: a wrong check digit is caught before anything is
//! sent, a wrong token is refused with the server's reason in the dialog's
//! language and asked again, the right one activates, and the configuration
//! file keeps its comments and gains server and license number.

use e2e::{binary, free_tcp_port, free_udp_port};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child that is killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server with one paid standard license: (process, number, token, key, pin, quic address).
fn server(dir: &Path) -> (Running, String, String, String, String, String) {
    let pls = binary("portal", "pls");
    let quic = format!("127.0.0.1:{}", free_udp_port());
    let env = [
        ("PLS_DATA_DIR", dir.join("pls").display().to_string()),
        ("PLS_QUIC_LISTEN", quic.clone()),
        ("PLS_HTTP_LISTEN", format!("127.0.0.1:{}", free_tcp_port())),
        ("PLS_METRICS_LISTEN", "off".into()),
        ("PLS_LOG", "warn".into()),
    ];
    let admin = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(&pls)
            .args(["admin", "--json"])
            .args(args)
            .envs(env.iter().cloned())
            .output()
            .expect("pls admin");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let created = admin(&[
        "create-license",
        "--type",
        "standard",
        "--company",
        "Setup AG",
        "--first-name",
        "S",
        "--last-name",
        "U",
        "--data-name",
        "Setup",
        "--data-postcode",
        "3123",
        "--data-city",
        "Belp",
        "--paid",
    ]);
    let notice = admin(&["identity"])["notice"]
        .as_str()
        .expect("notice")
        .to_owned();
    let field = |label: &str| {
        notice
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .expect(label)
            .trim()
            .to_owned()
    };
    let child = Command::new(&pls)
        .arg("serve")
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pls serve");
    (
        Running(child),
        created["license"]["number"]
            .as_str()
            .expect("number")
            .to_owned(),
        created["token"].as_str().expect("token").to_owned(),
        field("server public key:"),
        field("certificate SHA-256:"),
        quic,
    )
}

/// Waits for `path` to exist.
fn wait_for(path: &Path) {
    let end = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(Instant::now() < end, "{} did not appear", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `promos-licd setup` in a pseudo-terminal: answers are typed when the screen
/// shows their prompt. Returns everything the terminal showed and the exit status.
fn dialog(config: &Path, socket: &Path, lang: &str, script: &[(&str, &str)]) -> (String, bool) {
    let licd = binary("daemon", "promos-licd");
    let command = format!(
        "{} --config {} --socket {} setup",
        licd.display(),
        config.display(),
        socket.display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-f", "-e", "-c", &command, "/dev/null"])
        .env("LANG", lang)
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("PROMOS_LICD_TOKEN")
        .env(
            "PROMOS_LICD_TEST_HARDWARE_ID",
            "0123456789abcdef0123456789abcdef",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs the dialog in a pseudo-terminal");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    let mut screen = String::new();
    let mut seen = 0;
    for (prompt, answer) in script {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = screen[seen..].find(prompt) {
                seen += i + prompt.len();
                break;
            }
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no prompt {prompt:?}; the screen:\n{screen}"
            );
            if let Ok(bytes) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
                screen.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        if prompt.contains("oken") {
            // The prompt is written just before the terminal's echo is switched
            // off: a typist is never that fast, and typing earlier would echo.
            std::thread::sleep(Duration::from_millis(300));
        }
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .expect("type");
        stdin.flush().expect("flush");
    }
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        while let Ok(bytes) = rx.try_recv() {
            screen.push_str(&String::from_utf8_lossy(&bytes));
        }
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < end,
            "setup did not end; the screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(bytes) = rx.recv_timeout(Duration::from_millis(200)) {
        screen.push_str(&String::from_utf8_lossy(&bytes));
    }
    (screen, status.success())
}

/// A daemon with the vendor's settings in its configuration (as the portal's
/// download gives them) but no server address and no license number yet.
fn daemon(dir: &Path, key: &str, pin: &str) -> (Running, PathBuf, PathBuf) {
    let config = dir.join("promos-licd.toml");
    let socket = dir.join("licd.sock");
    std::fs::write(
        &config,
        format!(
            "# the site's configuration\nserver_name = \"localhost\"\nserver_cert_sha256 = \"{pin}\"\ntrusted_keys = [\"{key}\"]\ndata_dir = \"{}\"\nsocket_path = \"{}\"\n",
            dir.join("licd").display(),
            socket.display()
        ),
    )
    .expect("config");
    let child = Command::new(binary("daemon", "promos-licd"))
        .args(["--config", &config.display().to_string(), "run"])
        .env(
            "PROMOS_LICD_TEST_HARDWARE_ID",
            "0123456789abcdef0123456789abcdef",
        )
        .env("PROMOS_LICD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("promos-licd run");
    wait_for(&socket);
    (Running(child), config, socket)
}

fn wrong_digit(number: &str) -> String {
    let (body, last) = number.split_at(number.len() - 1);
    let d = (last.parse::<u8>().expect("digit") + 1) % 10;
    format!("{body}{d}")
}

#[test]
fn the_setup_dialog_in_german_and_english() {
    for (lang, texts) in [
        (
            "de_CH.UTF-8",
            [
                "Lizenzserver-Adresse",
                "Lizenznummer",
                "Die Prüfziffer stimmt nicht",
                "Lizenz-Token (wird nicht angezeigt): ",
                "Das Lizenz-Token ist falsch",
                "Aktiviert.",
                "Hardware-ID dieses Computers: 0123456789abcdef0123456789abcdef",
            ],
        ),
        (
            "en_US.UTF-8",
            [
                "License server address",
                "License number",
                "The check digit is wrong",
                "License token (not shown): ",
                "The license token is wrong",
                "Activated.",
                "Hardware ID of this computer: 0123456789abcdef0123456789abcdef",
            ],
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_pls, number, token, key, pin, quic) = server(dir.path());
        let (_licd, config, socket) = daemon(dir.path(), &key, &pin);
        let wrong = wrong_digit(&number);
        let (screen, ok) = dialog(
            &config,
            &socket,
            lang,
            &[
                (texts[0], &quic),
                (texts[1], &wrong),
                (texts[1], &number),
                (texts[3], "00000000000000000000000000000000"),
                (texts[3], &token),
            ],
        );
        assert!(ok, "setup failed:\n{screen}");
        for t in [texts[2], texts[4], texts[5], texts[6]] {
            assert!(screen.contains(t), "{lang}: no {t:?} in\n{screen}");
        }
        // The token typed at the prompt is never shown on the terminal.
        assert!(
            !screen.contains(&token),
            "{lang}: the token was echoed:\n{screen}"
        );
        let written = std::fs::read_to_string(&config).expect("config");
        assert!(written.contains("# the site's configuration"), "{written}");
        assert!(
            written.contains(&format!("license_number = \"{number}\"")),
            "{written}"
        );
        assert!(
            written.contains(&format!("server = \"{quic}\"")),
            "{written}"
        );
        assert!(!written.contains(&token), "the token is not stored");
    }
}
