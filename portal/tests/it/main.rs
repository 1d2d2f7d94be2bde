//! Integration tests of the license server, in one binary to keep build time down.

mod cli;
mod crash;
mod damage;
mod fuzz_seeds;
mod idempotency;
mod lists;
mod metrics;
mod model;
mod quic;
mod search;
mod structure;
mod upgrade;
mod util;
