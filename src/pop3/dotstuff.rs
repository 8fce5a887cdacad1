//! Streaming decoder for POP3 multi-line responses (RFC 1939 section 3).
//!
//! The server ends a multi-line response with a line holding a single `.` and adds a `.` in
//! front of every line that starts with one. [`Unstuffer`] undoes both on arbitrary chunks of
//! input without ever buffering a line, so a 200 MB message or a 10 MB line costs no memory.
//! Every other byte is kept exactly: NUL, bare CR, 8-bit data, overlong lines.
//!
//! A line starts after LF. The terminator is `.` CRLF at a line start; `.` followed by a bare
//! LF is accepted too, because a server that sends it means the end and waiting for a CRLF that
//! never comes would only end in a timeout.

/// Where the decoder stands in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a line.
    LineStart,
    /// Inside a line.
    Mid,
    /// Saw `.` at a line start (not emitted).
    Dot,
    /// Saw `.` CR at a line start (neither emitted).
    DotCr,
    /// The terminating line has been consumed.
    Done,
}

/// The result of one [`Unstuffer::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes consumed; bytes after them belong to the next response.
    pub consumed: usize,
    /// Output bytes written.
    pub produced: usize,
    /// The terminating line was consumed: the response is complete.
    pub done: bool,
}

/// Incremental multi-line decoder. Feed it input in any chunking; it gives the same output.
#[derive(Debug, Clone)]
pub struct Unstuffer {
    state: State,
}

impl Default for Unstuffer {
    fn default() -> Self {
        Unstuffer::new()
    }
}

impl Unstuffer {
    pub fn new() -> Unstuffer {
        Unstuffer {
            state: State::LineStart,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` into `out` until either runs out or the response ends.
    pub fn step(&mut self, input: &[u8], out: &mut [u8]) -> Step {
        let mut i = 0;
        let mut o = 0;
        while i < input.len() && o < out.len() {
            match self.state {
                State::Done => break,
                State::LineStart => {
                    if input[i] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                    } else {
                        self.state = State::Mid;
                    }
                }
                State::Mid => {
                    // Copy up to and including the next LF in one go: this is the hot path.
                    let room = (input.len() - i).min(out.len() - o);
                    let chunk = &input[i..i + room];
                    let len = match memchr::memchr(b'\n', chunk) {
                        Some(lf) => {
                            self.state = State::LineStart;
                            lf + 1
                        }
                        None => room,
                    };
                    out[o..o + len].copy_from_slice(&chunk[..len]);
                    i += len;
                    o += len;
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    b'\n' => {
                        self.state = State::Done;
                        i += 1;
                    }
                    // A stuffed line: the dot is dropped and the rest is ordinary data.
                    _ => self.state = State::Mid,
                },
                State::DotCr => {
                    if input[i] == b'\n' {
                        self.state = State::Done;
                        i += 1;
                    } else {
                        // ".\rX": a stuffed line whose data starts with a bare CR.
                        out[o] = b'\r';
                        o += 1;
                        self.state = State::Mid;
                    }
                }
            }
        }
        Step {
            consumed: i,
            produced: o,
            done: self.state == State::Done,
        }
    }
}

/// Dot-stuffs `body` and appends the terminator: the wire form a server sends. The inverse of
/// [`Unstuffer`] for bodies whose line ends are CRLF; used by tests and fake servers.
pub fn stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut at_line_start = true;
    for &b in body {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Dot-stuffs what is written through it, streaming: the server side of [`Unstuffer`].
/// [`Stuffer::finish`] ends the body with CRLF (when it did not end with a line end) and the
/// terminator.
pub struct Stuffer<W: std::io::Write> {
    inner: W,
    at_line_start: bool,
}

impl<W: std::io::Write> Stuffer<W> {
    pub fn new(inner: W) -> Stuffer<W> {
        Stuffer {
            inner,
            at_line_start: true,
        }
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        if !self.at_line_start {
            self.inner.write_all(b"\r\n")?;
        }
        self.inner.write_all(b".\r\n")?;
        Ok(self.inner)
    }
}

impl<W: std::io::Write> std::io::Write for Stuffer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // Whole runs between line starts go out in one write each.
        let mut rest = buf;
        while !rest.is_empty() {
            if self.at_line_start && rest[0] == b'.' {
                self.inner.write_all(b".")?;
            }
            let run = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
            self.inner.write_all(&rest[..run])?;
            self.at_line_start = rest[run - 1] == b'\n';
            rest = &rest[run..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streaming_stuffer_writes_what_stuff_does_in_any_chunks() {
        use std::io::Write as _;
        let body = b".a\r\n..b\r\nc.\r\n.\r\nend.".as_slice();
        for chunk in 1..body.len() + 1 {
            let mut stuffer = Stuffer::new(Vec::new());
            for piece in body.chunks(chunk) {
                stuffer.write_all(piece).unwrap();
            }
            assert_eq!(stuffer.finish().unwrap(), stuff(body), "chunk {chunk}");
        }
    }

    /// Decodes `wire` fed in chunks of `chunk` bytes with an output buffer of `room` bytes.
    fn decode(wire: &[u8], chunk: usize, room: usize) -> (Vec<u8>, usize) {
        let mut u = Unstuffer::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut buf = vec![0u8; room];
        while !u.is_done() && pos < wire.len() {
            let end = (pos + chunk).min(wire.len());
            let step = u.step(&wire[pos..end], &mut buf);
            out.extend_from_slice(&buf[..step.produced]);
            pos += step.consumed;
        }
        assert!(u.is_done(), "terminator not found in {wire:?}");
        (out, pos)
    }

    fn all_chunkings(wire: &[u8], expected: &[u8]) {
        for chunk in 1..=wire.len().max(1) {
            for room in [1, 2, 3, 7, 4096] {
                let (out, consumed) = decode(wire, chunk, room);
                assert_eq!(out, expected, "chunk {chunk} room {room}");
                assert_eq!(consumed, wire.len(), "chunk {chunk} room {room}");
            }
        }
    }

    #[test]
    fn plain_body() {
        all_chunkings(
            b"Subject: x\r\n\r\nhello\r\n.\r\n",
            b"Subject: x\r\n\r\nhello\r\n",
        );
    }

    #[test]
    fn empty_body_and_single_crlf() {
        all_chunkings(b".\r\n", b"");
        all_chunkings(b"\r\n.\r\n", b"\r\n");
    }

    #[test]
    fn dot_stuffing_is_undone() {
        all_chunkings(
            b"..\r\n...x\r\n.a\r\nb.\r\n.\r\n",
            b".\r\n..x\r\na\r\nb.\r\n",
        );
    }

    #[test]
    fn every_other_byte_is_kept() {
        let wire = b"a\0b\rc\x80\xff\r\n\r\r\n.\r.\r\n.\r\n";
        all_chunkings(wire, b"a\0b\rc\x80\xff\r\n\r\r\n\r.\r\n");
    }

    #[test]
    fn stops_at_terminator_and_leaves_the_rest() {
        let wire = b"x\r\n.\r\n+OK next\r\n";
        let mut u = Unstuffer::new();
        let mut out = [0u8; 64];
        let step = u.step(wire, &mut out);
        assert!(step.done);
        assert_eq!(&out[..step.produced], b"x\r\n");
        assert_eq!(&wire[step.consumed..], b"+OK next\r\n");
    }

    #[test]
    fn bare_lf_terminator_is_accepted() {
        all_chunkings(b"x\n.\n", b"x\n");
    }

    #[test]
    fn stuff_then_unstuff_round_trips() {
        let bodies: [&[u8]; 6] = [
            b"",
            b"\r\n",
            b".\r\n",
            b"..\r\n.\r\n\r\n.x",
            b"From me\r\n.\r\nend\r\n",
            b"\0\r\r\n\xff",
        ];
        for body in bodies {
            let wire = stuff(body);
            let (out, _) = decode(&wire, 3, 5);
            let mut expected = body.to_vec();
            if !expected.is_empty() && !expected.ends_with(b"\n") {
                expected.extend_from_slice(b"\r\n");
            }
            assert_eq!(out, expected, "{body:?}");
        }
    }
}
