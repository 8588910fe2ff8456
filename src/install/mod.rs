//! Installing verified content: files into the root (stage + rename), and A/B images.

pub mod boot;
pub mod esp;
pub mod files;
pub mod image;
pub mod root;
pub mod slot_io;

pub use files::{apply, Applied};
pub use root::TargetRoot;
