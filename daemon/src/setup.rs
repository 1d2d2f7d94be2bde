//! `promos-licd setup`: the manual's first-start dialog on a terminal (chapter
//! 9): the license server address (default: the configured one), the license
//! number (its check digit caught at once), the token (not echoed), with this
//! host's hardware ID shown; then the configuration is written (server and
//! license number, everything else in the file kept) and the running daemon
//! activates. German or English by the locale (`LC_ALL`, `LC_MESSAGES`, `LANG`).
//!
//! The dialog itself ([`Dialog`]) reads answers from any `BufRead` and writes to
//! any `Write`, so its wording and rules are tested without a terminal; the
//! binary feeds it the terminal, and the token through `rpassword` (no echo).

use keys::LicenseNumber;
use std::io::{BufRead, Write};
use std::path::Path;

/// The language of the dialog and of the other CLI outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    De,
    En,
}

impl Lang {
    /// From the locale variables as POSIX orders them: `LC_ALL`, then
    /// `LC_MESSAGES`, then `LANG`; German for `de…`, English otherwise.
    pub fn from_locale(var: impl Fn(&str) -> Option<String>) -> Lang {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .into_iter()
            .filter_map(&var)
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        if locale.to_ascii_lowercase().starts_with("de") {
            Lang::De
        } else {
            Lang::En
        }
    }

    /// The process's locale.
    pub fn current() -> Lang {
        Lang::from_locale(|k| std::env::var(k).ok())
    }

    /// `de` or `en` as the language's text.
    pub fn pick<'a>(self, de: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::De => de,
            Lang::En => en,
        }
    }
}

/// What the dialog collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answers {
    pub server: String,
    pub license: LicenseNumber,
}

/// How often a wrong license number is asked again before the dialog gives up.
const ATTEMPTS: usize = 3;

/// The dialog's questions before the token.
#[derive(Debug)]
pub struct Dialog {
    pub lang: Lang,
    pub hardware_id: String,
    /// The configured server, offered as the default.
    pub server: String,
    /// The configured license number, offered as the default.
    pub license: Option<LicenseNumber>,
}

impl Dialog {
    /// Asks for server and license number on `input`, writing to `out`. `None`
    /// when the input ends or the number stays wrong.
    pub fn ask(
        &self,
        input: &mut impl BufRead,
        out: &mut impl Write,
    ) -> std::io::Result<Option<Answers>> {
        let l = self.lang;
        writeln!(
            out,
            "{}",
            l.pick("ProMoS Lizenz-Einrichtung", "ProMoS license setup")
        )?;
        writeln!(
            out,
            "{} {}",
            l.pick(
                "Hardware-ID dieses Computers:",
                "Hardware ID of this computer:"
            ),
            self.hardware_id
        )?;
        write!(
            out,
            "{} [{}]: ",
            l.pick("Lizenzserver-Adresse", "License server address"),
            self.server
        )?;
        out.flush()?;
        let Some(server) = line(input)? else {
            return Ok(None);
        };
        let server = if server.is_empty() {
            self.server.clone()
        } else {
            normalize_servers(&server)
        };
        for _ in 0..ATTEMPTS {
            match &self.license {
                Some(n) => write!(out, "{} [{n}]: ", l.pick("Lizenznummer", "License number"))?,
                None => write!(out, "{}: ", l.pick("Lizenznummer", "License number"))?,
            }
            out.flush()?;
            let Some(text) = line(input)? else {
                return Ok(None);
            };
            let parsed = match (&self.license, text.is_empty()) {
                (Some(n), true) => Ok(n.clone()),
                _ => text.parse::<LicenseNumber>(),
            };
            match parsed {
                Ok(license) => return Ok(Some(Answers { server, license })),
                Err(e) => writeln!(out, "{}", number_error(l, &e.to_string()))?,
            }
        }
        Ok(None)
    }
}

/// A wrong license number as the customer reads it.
fn number_error(l: Lang, detail: &str) -> String {
    if detail.contains("check digit") {
        l.pick(
            "Die Prüfziffer stimmt nicht: bitte prüfen Sie die Lizenznummer auf Tippfehler.",
            "The check digit is wrong: please check the license number for a typing mistake.",
        )
        .to_owned()
    } else {
        l.pick(
            "Eine Lizenznummer hat 10 Ziffern (siehe Portal, Lizenz-Seite).",
            "A license number has 10 digits (see the portal's license page).",
        )
        .to_owned()
    }
}

/// One line without its line end; `None` at the end of the input.
fn line(input: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut s = String::new();
    if input.read_line(&mut s)? == 0 {
        return Ok(None);
    }
    Ok(Some(s.trim().to_owned()))
}

/// A server list as typed (`a:4433, b`): each normalized, joined by ", ".
pub fn normalize_servers(text: &str) -> String {
    server_list(text)
        .iter()
        .map(|s| crate::config::normalize_server(s))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The servers of a comma-separated list.
pub fn server_list(text: &str) -> Vec<&str> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Writes `server` and `license_number` into the configuration file at `path`
/// (created if missing), keeping every other key and every comment; replaced
/// atomically (temporary file, fsync, rename, fsync of the directory), mode
/// 0640 unless the file had another.
pub fn write_config(path: &Path, answers: &Answers) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = old
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    doc["server"] = match server_list(&answers.server)[..] {
        [one] => toml_edit::value(one),
        ref several => toml_edit::value(several.iter().copied().collect::<toml_edit::Array>()),
    };
    doc["license_number"] = toml_edit::value(answers.license.to_string());
    let text = doc.to_string();
    // The result must still be a configuration the daemon reads.
    crate::Config::from_toml(&text, &Default::default())
        .map_err(|e| format!("the new configuration would not be valid: {e}"))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o640)
    };
    replace_atomically(path, text.as_bytes(), mode)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn replace_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.setup-tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
    }
    // Keep the owner and group of the file it replaces (root:promos).
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialog(lang: Lang, license: Option<&str>) -> Dialog {
        Dialog {
            lang,
            hardware_id: "f81213acb32243aeda96bc780dfc4a30".into(),
            server: "license.promosnt.com:4433".into(),
            license: license.map(|n| n.parse().expect("number")),
        }
    }

    fn run(d: &Dialog, input: &str) -> (Option<Answers>, String) {
        let mut out = Vec::new();
        let answers = d.ask(&mut input.as_bytes(), &mut out).expect("io");
        (answers, String::from_utf8(out).expect("utf8"))
    }

    #[test]
    fn the_locale_picks_the_language() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(Lang::from_locale(env(&[("LANG", "de_CH.UTF-8")])), Lang::De);
        assert_eq!(Lang::from_locale(env(&[("LANG", "en_US.UTF-8")])), Lang::En);
        assert_eq!(Lang::from_locale(env(&[])), Lang::En);
        assert_eq!(
            Lang::from_locale(env(&[("LC_ALL", "en_GB.UTF-8"), ("LANG", "de_DE.UTF-8")])),
            Lang::En
        );
    }

    #[test]
    fn a_wrong_check_digit_is_caught_and_asked_again() {
        let (answers, text) = run(&dialog(Lang::De, None), "\n1921900012\n1921900019\n");
        assert_eq!(
            answers,
            Some(Answers {
                server: "license.promosnt.com:4433".into(),
                license: "1921900019".parse().expect("number"),
            })
        );
        assert!(text.contains("Hardware-ID dieses Computers: f81213acb32243aeda96bc780dfc4a30"));
        assert!(text.contains("Die Prüfziffer stimmt nicht"), "{text}");
        let (_, text) = run(&dialog(Lang::En, None), "pls.example\n12\n1921900019\n");
        assert!(text.contains("A license number has 10 digits"), "{text}");
    }

    #[test]
    fn defaults_are_taken_and_the_input_may_end() {
        let (answers, _) = run(&dialog(Lang::En, Some("1921900019")), "pls.example.com\n\n");
        let answers = answers.expect("answers");
        assert_eq!(answers.server, "pls.example.com:4433");
        assert_eq!(answers.license.to_string(), "1921900019");
        assert_eq!(run(&dialog(Lang::En, None), "\n").0, None);
        assert_eq!(run(&dialog(Lang::En, None), "\n1\n2\n3\n").0, None);
    }

    #[test]
    fn a_server_list_is_offered_and_written_as_a_list() {
        let mut d = dialog(Lang::En, None);
        d.server = "pls-a.example:4433, pls-b.example:4433".into();
        let (answers, shown) = run(&d, "\n1921900019\n");
        let answers = answers.expect("answers");
        assert!(
            shown.contains("[pls-a.example:4433, pls-b.example:4433]"),
            "{shown}"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("promos-licd.toml");
        write_config(&path, &answers).expect("written");
        let c = crate::Config::from_toml(
            &std::fs::read_to_string(&path).expect("read"),
            &Default::default(),
        )
        .expect("valid");
        let servers: Vec<String> = c.servers().into_iter().map(|(s, _)| s).collect();
        assert_eq!(servers, ["pls-a.example:4433", "pls-b.example:4433"]);
        assert_eq!(
            normalize_servers(" a.example ,https://b.example"),
            "a.example:4433, b.example:4433"
        );
    }

    #[test]
    fn the_configuration_keeps_everything_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("promos-licd.toml");
        std::fs::write(
            &path,
            "# keep me\nserver = \"old.example:4433\"\n#token = \"x\"\n\n[dongle]\nbackend = \"simulated\"\nsimulated_file = \"/tmp/x\"\n",
        )
        .expect("write");
        let answers = Answers {
            server: "new.example:4433".into(),
            license: "1921900019".parse().expect("number"),
        };
        write_config(&path, &answers).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("# keep me") && text.contains("#token = \"x\""),
            "{text}"
        );
        let c = crate::Config::from_toml(&text, &Default::default()).expect("valid");
        assert_eq!(c.server, "new.example:4433");
        assert_eq!(c.license_number, Some(answers.license.clone()));
        assert!(matches!(
            c.dongle,
            crate::config::DongleBackend::Simulated { .. }
        ));
        // A file that is not there yet is created.
        let fresh = dir.path().join("etc/new.toml");
        write_config(&fresh, &answers).expect("created");
        assert!(std::fs::read_to_string(&fresh)
            .expect("read")
            .contains("1921900019"));
    }
}
