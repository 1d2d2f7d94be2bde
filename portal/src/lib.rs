//! The ProMoS license server ("PLS").
#![forbid(unsafe_code)]
