//! The settings every license daemon of this server needs, rendered as a ready
//! `promos-licd.toml`: the server's QUIC address (from `[quic] server_names`
//! and the port the endpoint listens on), its public signing key and the
//! SHA-256 pin of its certificate, and optionally a license number.
//!
//! [`DaemonSettings::render`] is the one place that writes this file: `pls
//! admin identity --daemon-config` prints it, the license page shows it and
//! offers it as the `promos-licd.toml` download. The license token is never
//! part of it (the site enters it once, in `promos-licd setup` or
//! `promos-licd activate --token`). The keys and their spelling are those of
//! the daemon's configuration (`daemon/src/config.rs`); the end-to-end test
//! `tests/tests/daemon_settings.rs` reads the rendered file with the daemon's
//! own parser and activates a daemon with it.

use crate::config::QuicConfig;
use crate::identity::Identity;
use keys::{LicenseNumber, PublicKey};
use std::net::SocketAddr;

/// What a daemon needs to reach and trust this server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// `host:port` addresses of the QUIC endpoint, one per configured server
    /// name; the first is the one written as `server`.
    pub servers: Vec<String>,
    /// The public keys the daemon verifies grants and receipts with.
    pub trusted_keys: Vec<PublicKey>,
    /// SHA-256 of the server certificate's DER bytes, 64 lowercase hex digits.
    pub cert_sha256: String,
}

impl DaemonSettings {
    /// The settings of a server with this QUIC configuration, listening on
    /// `bound` (the real port when the configuration says 0), and `identity`.
    pub fn new(quic: &QuicConfig, bound: SocketAddr, identity: &Identity) -> DaemonSettings {
        DaemonSettings::from_parts(
            &quic.server_names,
            bound.port(),
            vec![identity.public_key()],
            identity.cert_fingerprint(),
        )
    }

    /// The settings from their parts: `names` are `[quic] server_names` (the
    /// certificate's names; `localhost` when empty, as the certificate has it).
    pub fn from_parts(
        names: &[String],
        port: u16,
        trusted_keys: Vec<PublicKey>,
        cert_sha256: String,
    ) -> DaemonSettings {
        let mut servers: Vec<String> = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .map(|n| {
                if n.contains(':') {
                    // An IPv6 address: the port needs the brackets.
                    format!(
                        "[{}]:{port}",
                        n.trim_start_matches('[').trim_end_matches(']')
                    )
                } else {
                    format!("{n}:{port}")
                }
            })
            .collect();
        if servers.is_empty() {
            servers.push(format!("localhost:{port}"));
        }
        DaemonSettings {
            servers,
            trusted_keys,
            cert_sha256,
        }
    }

    /// The address written as `server`.
    pub fn server(&self) -> &str {
        self.servers.first().map_or("", String::as_str)
    }

    /// The public keys as the daemon's configuration spells them.
    pub fn key_texts(&self) -> Vec<String> {
        self.trusted_keys.iter().map(ToString::to_string).collect()
    }

    /// The `promos-licd.toml` for this server (and `license`, if given), with
    /// comments: exactly the keys and format `promos-licd` reads. Never holds a
    /// token.
    pub fn render(&self, license: Option<&LicenseNumber>) -> String {
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let mut out = String::new();
        out.push_str(
            "# promos-licd.toml: the ProMoS license daemon's settings for this license server.\n\
             # Save as /etc/promos-licd/promos-licd.toml (or add these keys to the file\n\
             # there), then `systemctl restart promos-licd` and `promos-licd setup`: it\n\
             # offers this server and license number (press Enter) and asks for the\n\
             # license token, which is never written here.\n\n",
        );
        out.push_str("# host:port of the license server (QUIC over UDP).\n");
        out.push_str(&format!("server = {}\n", q(self.server())));
        if self.server().starts_with("localhost:") {
            out.push_str(
                "# NOTE: the server's [quic] server_names is \"localhost\": daemons on other\n\
                 # hosts cannot reach it by this name; set server_names on the server.\n",
            );
        }
        if self.servers.len() > 1 {
            out.push_str("# The same server under its other names:\n");
            for s in &self.servers[1..] {
                out.push_str(&format!("#server = {}\n", q(s)));
            }
        }
        out.push_str("\n# The pin of the server's certificate: SHA-256 of its DER bytes.\n");
        out.push_str(&format!("server_cert_sha256 = {}\n", q(&self.cert_sha256)));
        out.push_str(
            "\n# The server's public signing keys: every grant and receipt must verify\n\
             # with one of them.\n",
        );
        let keys: Vec<String> = self.key_texts().iter().map(|k| q(k)).collect();
        out.push_str(&format!("trusted_keys = [{}]\n", keys.join(", ")));
        if let Some(n) = license {
            out.push_str("\n# The license number (the token is entered at the activation).\n");
            out.push_str(&format!("license_number = {}\n", q(n.as_str())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(names: &[&str]) -> DaemonSettings {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        DaemonSettings::from_parts(
            &names,
            4433,
            vec![keys::SigningKeyPair::from_seed(&[1; 32]).public()],
            "ab".repeat(32),
        )
    }

    #[test]
    fn every_server_name_becomes_an_address() {
        let s = settings(&["license.example.com", "10.0.0.5", "::1"]);
        assert_eq!(
            s.servers,
            vec!["license.example.com:4433", "10.0.0.5:4433", "[::1]:4433"]
        );
        let text = s.render(None);
        assert!(
            text.contains("\nserver = \"license.example.com:4433\"\n"),
            "{text}"
        );
        assert!(text.contains("\n#server = \"[::1]:4433\"\n"), "{text}");
        assert!(!text.contains("license_number"), "{text}");
        assert!(!text.contains("NOTE"), "{text}");
        assert_eq!(settings(&[]).servers, vec!["localhost:4433"]);
        assert!(settings(&["localhost"]).render(None).contains("NOTE"));
    }

    #[test]
    fn the_file_has_the_pin_the_keys_and_the_number() {
        let s = settings(&["pls.example"]);
        let n: LicenseNumber = "1921900019".parse().expect("number");
        let text = s.render(Some(&n));
        assert!(text.contains(&format!("\nserver_cert_sha256 = \"{}\"\n", "ab".repeat(32))));
        assert!(text.contains(&format!(
            "\ntrusted_keys = [\"{}\"]\n",
            keys::SigningKeyPair::from_seed(&[1; 32]).public()
        )));
        assert!(
            text.contains("\nlicense_number = \"1921900019\"\n"),
            "{text}"
        );
        assert!(!text.contains("\ntoken"), "{text}");
        // It is TOML, with exactly the daemon's keys.
        let table: toml::Table = text.parse().expect("toml");
        let mut found: Vec<&str> = table.keys().map(String::as_str).collect();
        found.sort_unstable();
        assert_eq!(
            found,
            vec![
                "license_number",
                "server",
                "server_cert_sha256",
                "trusted_keys"
            ]
        );
    }
}
