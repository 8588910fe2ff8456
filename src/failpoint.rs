//! Named crash points of the write path (docs/install.md). In a build with the
//! `failpoints` feature (the test builds), `FAILPOINTS="txn::commit=3*off->return"` kills
//! the process with SIGKILL at that point, as a power cut would stop it, and
//! `return(error)` makes the step fail with an I/O error instead; the tests then check
//! that the root is left clean and that the next run finishes the job. Without the
//! feature a point is nothing.

use crate::Result;

/// Dies here with SIGKILL, or fails with an injected I/O error, when the failpoint
/// `name` is configured to fire.
pub(crate) fn point(name: &str) -> Result<()> {
    #[cfg(feature = "failpoints")]
    if let Some(arg) = fail::eval(name, |arg| arg) {
        if arg.as_deref() == Some("error") {
            return Err(crate::Error::io(
                name,
                std::io::Error::other("injected by a failpoint"),
            ));
        }
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    Ok(())
}
