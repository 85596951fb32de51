//! The machine's current boot, as the kernel tells it: when it started and its id.
//! Files written in an earlier boot may have lost what was not flushed when the
//! machine went down.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`), read once;
/// `None` where it cannot be read.
pub(crate) fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_owned())
    })
    .as_deref()
}

/// Whether a file was last written since the machine booted (`/proc/stat`'s `btime`);
/// never where the boot time cannot be read.
pub(crate) fn written_since_boot(stat: &std::fs::Metadata) -> bool {
    static BOOTED: OnceLock<Option<SystemTime>> = OnceLock::new();
    let booted = BOOTED.get_or_init(|| {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let secs = stat.lines().find_map(|line| line.strip_prefix("btime "))?;
        Some(UNIX_EPOCH + Duration::from_secs(secs.trim().parse().ok()?))
    });
    booted.is_some_and(|booted| stat.modified().is_ok_and(|written| written > booted))
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_boot_has_one_id() {
        let id = super::boot_id().expect("Linux names its boot");
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(super::boot_id(), Some(id));
    }
}
