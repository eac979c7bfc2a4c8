//! Locking that survives a panicking holder. Every value behind a mutex here is consistent
//! between statements (counters, caches, sets of names), so a panic in one task must not take
//! every other task down with it through a poisoned lock.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering its data if a thread panicked while holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
