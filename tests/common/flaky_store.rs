//! An object store that fails some of its calls: the shared tier's trouble (an
//! unreachable, throttled or denying store) at a chosen rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::{ObjectStore, Result};

use super::hooked_store::{Hook, Hooked};

/// A store whose calls fail at the rate of [`Failing`].
pub type Flaky = Hooked<Failing>;

/// Fails `permille` of the calls (a 503 SlowDown, as S3 throttles), by a seeded
/// xorshift draw.
#[derive(Debug)]
pub struct Failing {
    permille: u64,
    state: AtomicU64,
}

/// `inner`, with `permille` of its calls failing.
pub fn flaky(inner: Arc<dyn ObjectStore>, permille: u64, seed: u64) -> Flaky {
    let failing = Failing {
        permille,
        state: AtomicU64::new(seed | 1),
    };
    Hooked::new(inner, failing)
}

impl Hook for Failing {
    fn call(&self, _kind: &'static str) -> Result<()> {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        if x % 1000 < self.permille {
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "503 SlowDown: please reduce your request rate".into(),
            });
        }
        Ok(())
    }
}
