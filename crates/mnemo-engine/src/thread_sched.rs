//! Thread scheduling: niceness (only ever lowered) and CPU clocks, for placing
//! deferrable work below recalls and for tracing where a slow request's time went.

/// Sets the calling thread's niceness to `nice` (0..=19; 0 leaves it as it is). On
/// Linux niceness is per thread, and threads it creates afterwards inherit it.
/// Unprivileged, it can only go up. A no-op elsewhere.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // two syscalls on this thread's own id; no memory is shared
pub fn lower_thread_priority(nice: i32) -> std::io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    // SAFETY: gettid has no preconditions; setpriority only reads its integer arguments.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub fn lower_thread_priority(_nice: i32) -> std::io::Result<()> {
    Ok(())
}

/// The calling thread's scheduler account, for tracing where a slow request's time
/// went: `(ns on a CPU, ns runnable but waiting for one)`. Linux only. The wait comes
/// from schedstat; the CPU time from the thread clock, which (unlike schedstat)
/// includes the slice the thread is running now.
#[cfg(target_os = "linux")]
pub fn thread_sched_ns() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let wait = text.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some((thread_cpu_ns(), wait))
}

/// See the Linux version.
#[cfg(not(target_os = "linux"))]
pub fn thread_sched_ns() -> Option<(u64, u64)> {
    None
}

/// CPU time of the calling thread, in ns (0 where the clock is not available).
#[allow(unsafe_code)] // one clock_gettime into a local struct
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn own_nice() -> i32 {
        // SAFETY: getpriority only reads its integer arguments.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = own_nice();
        if before > 5 {
            return; // already nicer than the test can check without privileges
        }
        let inside = std::thread::spawn(move || {
            lower_thread_priority(5).unwrap();
            own_nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, 5);
        assert_eq!(own_nice(), before);
    }
}
