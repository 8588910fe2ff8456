//! One read of a file for several consumers: a reader thread reads it in large blocks and
//! hands each block to every consumer, each of which sees a [`Read`] over the same bytes.
//! Publishing a core image uses it to compress the image's fullfile and to chunk it in
//! parallel without reading the image twice (chunker.rs).
//!
//! Memory is bounded: each consumer has at most [`AHEAD`] blocks queued, so the fastest
//! consumer waits for the slowest. A consumer that sees the stream end without the
//! reader's end mark (the reader failed, or another consumer gave up and the reader
//! stopped) gets an error, never a short read that looks like the end of the file.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Bytes per block: large reads, few messages.
const BLOCK: usize = 1 << 20;
/// Blocks queued per consumer at most (8 MiB each).
const AHEAD: usize = 8;

/// What a consumer receives: a block, the end, or why the reader stopped.
enum Piece {
    Data(Arc<[u8]>),
    End,
    Failed(String),
}

/// One consumer's side: the file's bytes in order.
pub struct TeeReader {
    rx: Receiver<Piece>,
    current: Option<Arc<[u8]>>,
    at: usize,
    ended: bool,
}

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(block) = &self.current {
                if self.at < block.len() {
                    let n = buf.len().min(block.len() - self.at);
                    buf[..n].copy_from_slice(&block[self.at..self.at + n]);
                    self.at += n;
                    return Ok(n);
                }
                self.current = None;
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Piece::Data(block)) => {
                    self.current = Some(block);
                    self.at = 0;
                }
                Ok(Piece::End) => self.ended = true,
                Ok(Piece::Failed(why)) => return Err(io::Error::other(why)),
                Err(_) => return Err(stopped()),
            }
        }
    }
}

/// What a consumer gets when the read stopped because of another consumer or the reader.
fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the shared read stopped early")
}

/// Whether `e` only says that the shared read stopped (the cause is elsewhere).
pub fn is_stop(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The reader's side: feeds every consumer.
pub struct Tee {
    txs: Vec<SyncSender<Piece>>,
}

/// A tee for `n` consumers.
pub fn tee(n: usize) -> (Tee, Vec<TeeReader>) {
    let (txs, readers) = (0..n)
        .map(|_| {
            let (tx, rx) = sync_channel(AHEAD);
            let reader = TeeReader {
                rx,
                current: None,
                at: 0,
                ended: false,
            };
            (tx, reader)
        })
        .unzip();
    (Tee { txs }, readers)
}

impl Tee {
    /// Reads `src` to its end, handing every block to every consumer; returns the bytes
    /// read. Stops (with an error) when a consumer has gone: the others then get an error.
    pub fn run<R: Read>(self, mut src: R) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let mut buf = vec![0u8; BLOCK];
            let mut filled = 0;
            while filled < BLOCK {
                match src.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.send_all(|| Piece::Failed(format!("reading the image: {e}")));
                        return Err(e);
                    }
                }
            }
            if filled == 0 {
                self.send_all(|| Piece::End);
                return Ok(total);
            }
            buf.truncate(filled);
            total += filled as u64;
            let block: Arc<[u8]> = buf.into();
            for tx in &self.txs {
                if tx.send(Piece::Data(Arc::clone(&block))).is_err() {
                    return Err(io::Error::other("a consumer of the image stopped"));
                }
            }
        }
    }

    fn send_all(&self, piece: impl Fn() -> Piece) {
        for tx in &self.txs {
            let _ = tx.send(piece());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_reads_the_same_bytes() {
        let data: Vec<u8> = (0..(3 * BLOCK + 12345)).map(|i| (i * 7) as u8).collect();
        let (t, readers) = tee(3);
        let got = std::thread::scope(|s| {
            let handles: Vec<_> = readers
                .into_iter()
                .map(|mut r| {
                    s.spawn(move || {
                        let mut v = Vec::new();
                        r.read_to_end(&mut v).map(|_| v)
                    })
                })
                .collect();
            assert_eq!(t.run(&data[..]).unwrap(), data.len() as u64);
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect::<Vec<_>>()
        });
        assert!(got.iter().all(|v| *v == data));
    }

    #[test]
    fn a_consumer_that_stops_fails_the_others_not_silently() {
        let data = vec![1u8; 20 * BLOCK];
        let (t, mut readers) = tee(2);
        let quitter = readers.pop().unwrap();
        let mut other = readers.pop().unwrap();
        drop(quitter);
        let (ran, read) = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut v = Vec::new();
                other.read_to_end(&mut v)
            });
            (t.run(&data[..]), h.join().unwrap())
        });
        assert!(ran.is_err());
        assert!(read.is_err(), "a short read must not look like the end");
    }
}
