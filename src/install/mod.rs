//! Installing verified content: files into the root through one transaction, and A/B
//! images.

pub mod boot;
pub mod esp;
pub mod image;
pub mod root;
pub mod slot_io;
pub mod transaction;

pub use root::{Create, TargetRoot};
pub use transaction::{Applied, Transaction};
