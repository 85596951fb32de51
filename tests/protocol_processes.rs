//! Placeholder until the multi-process protocol tests land.
