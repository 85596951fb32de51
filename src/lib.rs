//! placeholder docs
#![deny(missing_docs)]

mod cache;
mod error;
mod fill;
mod follow;
mod layout;
mod lock;
mod meta;
mod origin;
mod progress;
mod reader;
mod stats;
mod sys;

pub use cache::{Cache, CacheBuilder};
pub use error::{BoxError, Error, Result};
pub use layout::{Layout, ShardedLayout};
pub use origin::{FetchOptions, Fetched, FnOrigin, Origin, origin_fn};
pub use reader::{ReadKind, Reader};
pub use stats::Stats;
