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
    /// The byte total of the current step, when known before it runs (right after
    /// `Phase`); without it the bytes of a step are counted but their total is estimated.
    PhaseSize { bytes: u64 },
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
    /// How the content of a change came over the wire.
    Transfer(Transfer),
    /// A post-update action ran, failed, timed out or was skipped.
    PostUpdate(&'a crate::post_update::Report),
}

/// Bytes downloaded for a change's content, by the way they came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// Packs read, and the bytes they took on the wire.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Files made from deltas, and the (unpacked) bytes of those deltas.
    pub deltas: u64,
    pub delta_bytes: u64,
    /// Files staged from `staged/` members of packs.
    pub pack_files: u64,
    /// Fullfiles downloaded, and their bytes on the wire.
    pub fullfiles: u64,
    pub fullfile_bytes: u64,
}

impl std::fmt::Display for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes in {} packs ({} files from deltas of {} bytes, {} files whole), {} bytes in {} fullfiles",
            self.pack_bytes,
            self.packs,
            self.deltas,
            self.delta_bytes,
            self.pack_files,
            self.fullfile_bytes,
            self.fullfiles
        )
    }
}

/// Receives events; implementations must be callable from several threads.
pub trait Observer: Sync {
    /// Handles one event.
    fn event(&self, event: Event<'_>);
}
