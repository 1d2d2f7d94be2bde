//! The price engine of the ProMoS license portal (manual 4.1, PRODUCT.md "Prices").
//!
//! - [`list`]: the price list as data (`prices.toml`), loaded and checked at start.
//! - [`cover`]: the cheapest combination of packages that covers an amount.
//! - [`quote`]: a customer's [`Selection`] priced into positions, net, VAT and gross,
//!   for new licenses and for upgrades.
//! - [`money`]: amounts in German and English number format.
//!
//! Money is `rust_decimal::Decimal` throughout, never a float; the package search
//! works in whole cents.

#![forbid(unsafe_code)]

pub mod cover;
pub mod list;
pub mod money;
pub mod quote;

pub use list::{PriceList, PriceListError};
pub use quote::{
    DriverComposition, FieldError, OperatorProgram, Position, PositionLabel, Priced, Selection,
};
