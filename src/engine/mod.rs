//! The fill engine: the state every clone of a cache shares, the fills that run in this
//! process (leading one, following another process's, taking over), eviction after a
//! publish, and the readers that reads return. It imports the store, the origins and
//! the counters, never the façade.
//!
//! - [`state`]: [`Engine`], its settings and the map of running fills.
//! - [`serve`]: the answers to a cache's calls (get, read, load, path, put).
//! - [`progress`]: a fill as this process's readers see it.
//! - [`fill`]: starting fills, the task behind each, and leading one; [`copy`]: the
//!   leader's copy of the body into its tmp file (received, written and hashed at once).
//! - [`publish`]: the end of a leader's fill: into the store, or a revalidation.
//! - [`flush`]: flushing published blobs in the background.
//! - [`heartbeat`]: the leader's sign of life.
//! - [`resume`]: taking over a dead leader's fill where it stopped.
//! - [`follow`]: following another process's fill, and taking over.
//! - [`evict`]: eviction after a publish takes the store over its bound.
//! - [`slices`]: range reads of cold blobs by slices, one version per blob.
//! - [`blob`]: [`Blob`], a blob opened for many reads of its parts.
//! - [`reader`]: [`Reader`], and hits; [`fill_reader`]: readers of a fill in progress
//!   (and straight from the origin when the local disk fails).

mod blob;
mod copy;
mod evict;
mod fill;
mod fill_reader;
mod flush;
mod follow;
mod heartbeat;
mod progress;
mod publish;
mod reader;
mod resume;
mod serve;
mod slices;
mod state;

pub use blob::Blob;
pub use reader::{ReadKind, Reader};
pub(crate) use serve::LoadedEntry;
pub(crate) use state::{Engine, Settings};
