//! An in-memory stream that feeds the client one byte per read and records what it writes
//! (after rust-imap's `MockStream`): the strictest test of a reader's buffering.

use std::io::{self, Read, Write};

pub struct MockStream {
    input: Vec<u8>,
    pos: usize,
    pub written: Vec<u8>,
    /// Bytes per read call.
    pub chunk: usize,
}

impl MockStream {
    pub fn new(input: &[u8]) -> MockStream {
        MockStream {
            input: input.to_vec(),
            pos: 0,
            written: Vec::new(),
            chunk: 1,
        }
    }
}

impl Read for MockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.input.len() - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for MockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
