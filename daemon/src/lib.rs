//! The ProMoS license daemon `promos-licd`: one per ProMoS host.
//!
//! It keeps the signed license state in a sled cache, binds to the host's
//! hardware ID, checks with the license server over QUIC, enforces dongle
//! presence and the grace periods, and answers the ProMoS runtime on a local
//! Unix socket.
//!
//! - [`state`]: the sans-IO license state machine (every rule, the clock-rollback rule);
//! - [`service`]: the tokio shell, [`run`];
//! - [`socket`]: the JSON-lines protocol for the runtime (documented for C++);
//!   [`protocol`]: its requests, answers, status object and events as types;
//! - [`client`]: the QUIC client pinned to the server certificate;
//! - [`cache`]: the sled cache of signed state;
//! - [`config`]: TOML plus `PROMOS_LICD_*` environment overrides;
//! - [`hwid`]: the hardware ID; [`dongle`]: hidapi and simulated dongles;
//! - [`licinfo`]: `lic/licinfo.cfg`; [`doctor`]: the manual's chapter 11;
//! - [`setup`]: the first-start dialog; [`cli_text`]: what the other CLI
//!   commands print, German or English by the locale;
//! - [`notify`]: `sd_notify` for `Type=notify`; [`metrics`]: the optional
//!   Prometheus listener;
//! - [`peer`]: peer identity, mutual TLS and the QUIC endpoint for the site's
//!   other daemons; [`relay`]: what a daemon keeps for its peers (store and
//!   forward queue, site grants, rate limits).

#![forbid(unsafe_code)]

pub mod cache;
pub mod cli_text;
pub mod client;
pub mod config;
pub mod doctor;
pub mod dongle;
pub mod hwid;
pub mod licinfo;
pub mod metrics;
pub mod notify;
pub mod peer;
pub mod protocol;
pub mod relay;
pub mod service;
pub mod setup;
pub mod socket;
pub mod state;

pub use config::Config;
pub use service::run;
