//! An object store that counts the calls made to it, by kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use object_store::{ObjectStore, Result};

use crate::hooked_store::{Hook, Hooked};

/// A store that counts its calls in [`Calls`].
pub type Counting = Hooked<Calls>;

/// The calls made so far, by kind.
#[derive(Debug, Default)]
pub struct Calls(Mutex<BTreeMap<&'static str, u64>>);

/// `inner`, counting each call.
pub fn counting(inner: Arc<dyn ObjectStore>) -> Counting {
    Hooked::new(inner, Calls::default())
}

impl Calls {
    /// The calls so far, by kind.
    pub fn by_kind(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap().clone()
    }
}

impl Hook for Calls {
    fn call(&self, kind: &'static str) -> Result<()> {
        *self.0.lock().unwrap().entry(kind).or_default() += 1;
        Ok(())
    }
}
