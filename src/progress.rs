//! Progress and messages from the library to whoever shows them; the library never prints.

/// Something worth showing to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// A line of information.
    Info(String),
    /// Something went wrong but the command goes on.
    Warning(String),
    /// A step with a known number of items starts.
    Phase { name: &'a str, total: u64 },
    /// Items (and bytes) of the current step are done.
    Advance { items: u64, bytes: u64 },
    /// The current step is over.
    PhaseDone,
    /// A core image was written into a slot: where its bytes came from.
    ImageTransfer {
        /// The slot written (`a` or `b`).
        slot: &'a str,
        /// `chunks` or `full`.
        method: &'a str,
        size: u64,
        /// Bytes reused from the running slot or found in place in the slot written.
        reused: u64,
        /// Bytes downloaded (uncompressed).
        downloaded: u64,
        /// Bytes on the wire for them, when known.
        wire: Option<u64>,
    },
}

/// Receives events; implementations must be callable from several threads.
pub trait Observer: Sync {
    /// Handles one event.
    fn event(&self, event: Event<'_>);
}
