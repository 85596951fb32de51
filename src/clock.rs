//! The [`Clock`] that entry lifetimes are measured by.

use std::fmt;
use std::time::SystemTime;

/// Where the cache reads the time for expiry and last-read times. The default is the
/// system clock; tests and simulations pass their own to move time without waiting.
///
/// Staleness of fills in other processes is always measured on the system clock,
/// against the file times those processes' writes leave.
///
/// ```
/// use std::sync::Mutex;
/// use std::time::{Duration, SystemTime};
/// use readthrough::Clock;
///
/// /// A clock that moves only when told to.
/// struct Manual(Mutex<SystemTime>);
///
/// impl Clock for Manual {
///     fn now(&self) -> SystemTime {
///         *self.0.lock().unwrap()
///     }
/// }
/// # let clock = Manual(Mutex::new(SystemTime::UNIX_EPOCH));
/// # *clock.0.lock().unwrap() += Duration::from_secs(5);
/// # assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(5));
/// ```
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clock({:?})", self.now())
    }
}
