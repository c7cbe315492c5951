//! Giving freed heap memory back to the system.
//!
//! glibc's allocator keeps freed memory in its arenas for reuse, and returns to the system only
//! what sits at the top of an arena. After a burst — 500 clusters probed at start-up, a reconcile
//! storm after a watch reconnects — the operator's resident memory stays at the burst's level
//! while most of it is free. `malloc_trim(0)` releases every whole free page of every arena
//! (with `madvise(MADV_DONTNEED)`: the addresses stay mapped, so later allocations reuse them).
//! Run on a slow timer it costs a few milliseconds per minute and keeps an idle operator's
//! memory at what it holds. Elsewhere than glibc (musl, other systems) it does nothing.

use std::time::Duration;

/// How often freed memory is handed back.
pub const TRIM_EVERY: Duration = Duration::from_secs(30);

/// Trims on a timer until the runtime stops.
pub fn spawn_trimmer(every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Blocking (it walks every arena, briefly holding each one's lock): off the workers.
            let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
            tracing::trace!(released, "malloc_trim");
        }
    })
}

/// Releases free heap pages; whether the allocator released any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    unsafe extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: malloc_trim only reorganises the allocator's own free lists; it takes no pointer
    // and is thread-safe (it locks each arena).
    unsafe { malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_memory_is_released_on_glibc() {
        // Blocks below the mmap threshold (so in the heap), every other one kept: the freed ones
        // cannot merge into the heap's top, so free() returns none of their pages; a trim does.
        let blocks: Vec<Vec<u8>> = (0..4096).map(|_| vec![1u8; 16 * 1024]).collect();
        let (keep, freed): (Vec<_>, Vec<_>) = blocks
            .into_iter()
            .enumerate()
            .partition(|(i, _)| i % 2 == 0);
        drop(freed);
        let released = super::trim();
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        assert!(
            released,
            "64 MiB freed in the heap: the trim releases some of it"
        );
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        assert!(!released);
        assert!(keep.iter().all(|(_, b)| b[0] == 1));
    }
}
