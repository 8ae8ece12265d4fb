//! Bridges between blocking tar/gzip code and async streams, with bounded memory.
//!
//! `tar` and `flate2` are synchronous; storage uploads and downloads are async streams. These
//! adapters connect them through bounded channels, so at most `capacity × chunk` bytes are in
//! flight whatever the size of the tarball.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

/// Size of the chunks a [`ChannelWriter`] sends.
pub const CHUNK: usize = 256 * 1024;

/// A blocking `Write` that sends fixed-size chunks into a bounded async channel. Use it only on
/// a blocking thread (it blocks when the channel is full).
pub struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: BytesMut,
}

impl ChannelWriter {
    /// Writes into `tx`.
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A blocking `Read` over a bounded async channel of chunks. Use it only on a blocking thread.
pub struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads from `rx` until it closes.
    pub fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The receiving end of a channel as a `Stream`, e.g. for `put_artifact_stream`.
pub fn receiver_stream(
    mut rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl Stream<Item = io::Result<Bytes>> + Unpin + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn bytes_cross_both_bridges_unchanged() {
        let (tx, rx) = mpsc::channel(2);
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        let expected = data.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter::new(tx);
            w.write_all(&data)?;
            w.flush()
        });
        let (tx2, rx2) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            ChannelReader::new(rx2).read_to_end(&mut out).map(|_| out)
        });
        let mut stream = receiver_stream(rx);
        let mut chunks = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK);
            chunks += 1;
            tx2.send(Ok(chunk)).await.unwrap();
        }
        drop(tx2);
        writer.await.unwrap().unwrap();
        assert_eq!(chunks, 4);
        assert_eq!(reader.await.unwrap().unwrap(), expected);
    }
}
