//! [`Durability`]: when a published blob reaches stable storage, and how a read
//! after a crash tells a blob that did from one that may not have.

/// When a published blob is flushed to stable storage (`fsync` of its file and of
/// its directory), set with [`CacheBuilder::durability`](crate::CacheBuilder::durability).
///
/// Every mode keeps guarantees 1 and 4 across a power loss: a blob published without
/// a flush is recorded as such in its metadata, with the kernel's id of the boot it
/// was written in. A read of such a blob from an earlier boot (the machine went down
/// before the flush, or the flush was never asked for) checks its length and
/// SHA-256 against its metadata before it serves a byte: a blob that lost bytes,
/// gained zeros or kept an old version's is dropped and fetched again; one that
/// checks out is recorded as flushed and served. Within one boot nothing is lost
/// without a crash of the machine, so no check is needed. Metadata that did not
/// survive whole does not parse, and its blob is never served.
///
/// ```
/// use readthrough::Durability;
/// assert_eq!(Durability::default(), Durability::Background);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Flush each blob before it is published: the read that fetched it waits for
    /// the disk, and no check is ever needed after a crash.
    Fsync,
    /// Publish at once and flush in the background, in batches, then record the
    /// blob as flushed (the default). A crash of the machine before the flush costs
    /// one check of the blob at its next read.
    #[default]
    Background,
    /// Never flush. Every blob written in a boot that ended is checked at its next
    /// read after that.
    Off,
}

impl Durability {
    /// Whether blobs are flushed before they are published.
    pub(crate) fn before_publish(self) -> bool {
        self == Durability::Fsync
    }
}
