//! The ProMoS license daemon.
#![forbid(unsafe_code)]
