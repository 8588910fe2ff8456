//! Named crash points of the write path (docs/install.md). In a build with the
//! `failpoints` feature (the test builds), `FAILPOINTS="txn::commit=3*off->return"` kills
//! the process with SIGKILL at that point, as a power cut would stop it; the crash tests
//! then check that the next run finishes the job. Without the feature a point is nothing.

/// Dies here, with SIGKILL, when the failpoint `name` is configured to fire.
pub(crate) fn point(name: &str) {
    #[cfg(feature = "failpoints")]
    if fail::eval(name, |_| ()).is_some() {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}
