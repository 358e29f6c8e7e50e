//! Keeping freed memory for reuse in the experiment drivers.

/// Makes glibc's `malloc` keep freed memory for the next allocation instead of giving it back to
/// the kernel. A training step or an evaluation batch allocates and frees the same few
/// megabytes again and again; by default glibc serves blocks above its (adaptive) mmap threshold
/// with fresh `mmap`s and trims the heap's free top, so each reuse paid page faults and page
/// zeroing. On the project's CPU the final accuracy-vs-length sweep of one Problem 1 run spent
/// about a quarter of its time in the kernel that way, and the call saves about that much.
/// The cost is memory the process holds on to (at most its peak). Call it first in `main`.
/// Does nothing off glibc, or when `GLIBC_TUNABLES` is set (the user's own tuning wins).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // 32 MiB, glibc's largest mmap threshold: only bigger blocks still get their own map.
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        // SAFETY: `mallopt` only changes allocator parameters; it is called before the program
        // starts a thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        }
    }
}
