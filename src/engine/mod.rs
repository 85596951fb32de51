//! The fill engine: the state every clone of a cache shares, the fills that run in this
//! process (leading one, following another process's, taking over), eviction after a
//! publish, and the readers that reads return. It imports the store, the origins and
//! the counters, never the façade.
//!
//! - [`state`]: [`Engine`], its settings and the map of running fills.
//! - [`serve`]: the answers to a cache's calls (get, read, load, path, put).
//! - [`progress`]: a fill as this process's readers see it.
//! - [`fill`]: the task behind a fill; leading it.
//! - [`follow`]: following another process's fill, and taking over.
//! - [`evict`]: eviction after a publish takes the store over its bound.
//! - [`reader`]: [`Reader`], from the store, a fill, or straight from the origin.

mod evict;
mod fill;
mod follow;
mod progress;
mod reader;
mod serve;
mod state;

pub use reader::{ReadKind, Reader};
pub(crate) use serve::LoadedEntry;
pub(crate) use state::{Engine, Settings};
