//! Every cap on what a server can make the client download, unpack or allocate, in one
//! place, each with the reason for its size. A cap is a refusal, never a truncation: past
//! it the download (exit 17) or the archive (exit 18) fails with an error naming the URL
//! and the cap. Caps apply before trust, so together they bound the memory a hostile
//! server can cost: the largest thing held unverified in memory is a MoM (`MOM_TEXT`),
//! and a decoder takes at most `XZ_DECODER_MEMORY` or `2^ZSTD_WINDOW_LOG_MAX` bytes.
//!
//! The manifest parser's own limits (entries, path length, `contentsize:`) are format
//! rules and stay in `manifest.rs`; signed sizes bound fullfiles and images.

/// `version/format<F>/latest` and `version/latest_version`: one decimal number and a
/// newline.
pub const VERSION_FILE: u64 = 4096;

/// A rollout schedule (`version/format<F>/rollout`): a few header lines and one short
/// line per wave, at most 64 waves.
pub const ROLLOUT: u64 = 8192;

/// A detached DER PKCS#7 signature: a few KB with its embedded intermediates; 1 MiB
/// leaves room for long chains and large keys.
pub const SIGNATURE: u64 = 1 << 20;

/// `Manifest.MoM.tar` on the wire: one ~120-byte line per bundle, so a real MoM is
/// hundreds of KB unpacked and tens of KB compressed. 8 MiB is ample for any distribution.
pub const MOM_DOWNLOAD: u64 = 8 << 20;

/// The MoM text, held in memory because its signature covers the exact bytes and is
/// checked only once they are all there: 16 MiB is over 100,000 bundles.
pub const MOM_TEXT: u64 = 16 << 20;

/// A bundle manifest's text: ~150 bytes per entry, so 256 MiB is well over the 4 million
/// entries the parser takes, and large distributions' biggest manifests are tens of MB.
/// It is unpacked through the hash into a temporary file, not into memory, and read into
/// memory only once its hash matched the signed MoM.
pub const MANIFEST_TEXT: u64 = 256 << 20;

/// A bundle manifest tar on the wire: compression never makes its text much larger.
pub const MANIFEST_DOWNLOAD: u64 = compressed_bound(MANIFEST_TEXT);

/// Room for tar headers, padding and a small extra entry (mixer puts `Manifest.MoM.sig`
/// into the MoM tar) beyond a bounded payload.
pub const TAR_SLACK: u64 = 64 * 1024;

/// What one member of a pack may add to it beyond its content: its header, a GNU long-name
/// header with the name (a `delta/<a>-<b>-<hash>-<hash>` name is about 150 bytes), and the
/// padding of both to 512 bytes. A pack of many small files is mostly this.
pub const PACK_MEMBER_OVERHEAD: u64 = 4 * 512;

/// One fullfile when no signed `contentsize:` bounds it (an `update` stages files whose
/// sizes no manifest line records): larger than any file a root holds, smaller than
/// endless.
pub const FULLFILE: u64 = 64 << 30;

/// A core image's chunk index (`/core.index`, docs/chunks.md): about 75 bytes per chunk
/// of 64 KiB on average, so 16 MiB indexes a 13 GiB image. It is held in memory (the new
/// image's and the running slot's, at most two at a time) and cut off here before its
/// hash is known, so it costs a hostile server at most this much. An index delta
/// (decompressed) and a cached index are held to the same cap, and a delta may not make an
/// index with more chunks than one of this size can list.
pub const CHUNK_INDEX: u64 = 16 << 20;

/// Memory an xz decoder may take. liblzma sets aside the dictionary the stream header
/// declares (up to 4 GiB) and fills it as it unpacks, so without a cap a 75 KB file costs
/// gigabytes. `xz -9`, the largest preset, needs 65 MiB: anything a publisher makes with
/// the presets decodes.
pub const XZ_DECODER_MEMORY: u64 = 65 << 20;

/// Largest zstd window accepted, as a power of two (64 MiB): zstd's default decoder
/// limit is 128 MiB; levels up to 19 use at most 8 MiB windows, `--long` 128 MiB and
/// `--ultra -22` 128 MiB, so only those two are refused. gzip (32 KiB window) and bzip2
/// (900 KB blocks, under 4 MiB of decoder state) are bounded by their formats.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 26;

/// A file made or used by a bsdiff delta: libbsdiff refuses larger ones
/// (`BSDIFF_MAX_FILESZ`), so no publisher makes such deltas, and a delta header claiming
/// more is refused before anything is allocated or written.
pub const DELTA_FILE: u64 = 512 << 20;

/// One of swupd's bundle alias files (`alias.d`), local configuration read whole into
/// memory: real ones are a few lines, so 1 MiB leaves room while a link to a device or a
/// runaway file cannot exhaust memory.
pub const ALIAS_FILE: u64 = 1 << 20;

/// Most downloads at a time (`-W`, `max-parallel-downloads`): each is a thread with its
/// own connection, buffers and decoder (up to `XZ_DECODER_MEMORY`), so the count must not
/// be the server's or a typo's to choose. swupd defaults to 15 and documents no maximum;
/// 128 keeps even a fast mirror's connections busy.
pub const MAX_PARALLEL_DOWNLOADS: usize = 128;

/// The most a compressed object of `plain` unpacked bytes may take on the wire: an
/// incompressible payload grows a little in every format (stored deflate blocks add 5
/// bytes per 64 KiB), so the download bound allows 1/32 on top of the tar's own slack.
pub const fn compressed_bound(plain: u64) -> u64 {
    plain.saturating_add(plain / 32).saturating_add(TAR_SLACK)
}

/// A size for messages: bytes, and MiB when that is a round figure.
pub fn describe(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{bytes} bytes ({} MiB)", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}
