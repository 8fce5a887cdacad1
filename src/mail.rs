//! Pure helpers for the bits of mail syntax popbackup needs: finding the end of the header
//! section in a byte stream, and the Date/From/Subject/Message-ID summary shown in listings.
//!
//! Messages are stored byte for byte; nothing here changes them. Headers are parsed leniently
//! (real mail is full of broken headers) and RFC 2047 encoded words are decoded for display.

/// The most header bytes kept for a summary; headers beyond are ignored (a hostile or broken
/// message could have megabytes of them).
pub const MAX_HEADER_BYTES: usize = 256 * 1024;

/// Longest summary field kept, in characters.
const MAX_FIELD_CHARS: usize = 998;

/// The headers a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderSummary {
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
}

/// Collects a message's header section as its bytes stream past.
#[derive(Debug, Default)]
pub struct HeaderCapture {
    bytes: Vec<u8>,
    done: bool,
}

impl HeaderCapture {
    pub fn new() -> HeaderCapture {
        HeaderCapture::default()
    }

    /// Feeds the next chunk of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let room = MAX_HEADER_BYTES - self.bytes.len();
        let start = self.bytes.len().saturating_sub(3);
        self.bytes
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if let Some(end) = blank_line_end(&self.bytes, start) {
            self.bytes.truncate(end);
            self.done = true;
        } else if self.bytes.len() >= MAX_HEADER_BYTES {
            self.done = true;
        }
    }

    /// The header bytes seen so far (all of them once the blank line has passed).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn summary(&self) -> HeaderSummary {
        summarize(&self.bytes)
    }
}

/// Offset just past the blank line that ends the header section (`\r\n\r\n` or `\n\n`).
pub fn header_end(bytes: &[u8]) -> Option<usize> {
    blank_line_end(bytes, 0)
}

/// Like [`header_end`], looking only at line ends at or after `from`.
fn blank_line_end(bytes: &[u8], from: usize) -> Option<usize> {
    // A message that starts with a blank line has no headers at all.
    if from == 0 {
        if bytes.starts_with(b"\r\n") {
            return Some(2);
        }
        if bytes.starts_with(b"\n") {
            return Some(1);
        }
    }
    let mut i = from;
    while let Some(pos) = memchr::memchr(b'\n', &bytes[i..]) {
        let nl = i + pos;
        let rest = &bytes[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// Date, From, Subject and Message-ID of a header section (or a whole message).
pub fn summarize(message: &[u8]) -> HeaderSummary {
    let end = header_end(message)
        .unwrap_or(message.len())
        .min(MAX_HEADER_BYTES);
    let Ok((headers, _)) = mailparse::parse_headers(&message[..end]) else {
        return HeaderSummary::default();
    };
    use mailparse::MailHeaderMap as _;
    let field = |name: &str| {
        headers.get_first_header(name).and_then(|h| {
            let value = h.get_value();
            let value: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
            let value: String = value
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_FIELD_CHARS)
                .collect();
            (!value.is_empty()).then_some(value)
        })
    };
    HeaderSummary {
        date: field("Date"),
        from: field("From"),
        subject: field("Subject"),
        message_id: field("Message-ID"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blank_line() {
        assert_eq!(header_end(b"A: b\r\n\r\nbody"), Some(8));
        assert_eq!(header_end(b"A: b\n\nbody"), Some(6));
        assert_eq!(header_end(b"\r\nbody"), Some(2));
        assert_eq!(header_end(b"A: b\r\nC: d\r\n"), None);
    }

    #[test]
    fn capture_across_chunks() {
        let message = b"Subject: =?UTF-8?B?SGVsbG8gd29ybGQ=?=\r\nFrom: A <a@x>\r\nDate: Mon, 2 Jan 2023\r\n  10:00:00 +0000\r\n\r\nbody\r\n\r\nmore";
        for split in 1..message.len() {
            let mut capture = HeaderCapture::new();
            for chunk in message.chunks(split) {
                capture.feed(chunk);
            }
            let end = header_end(message).unwrap();
            assert_eq!(capture.bytes(), &message[..end], "chunk size {split}");
        }
        let summary = summarize(message);
        assert_eq!(summary.subject.as_deref(), Some("Hello world"));
        assert_eq!(summary.from.as_deref(), Some("A <a@x>"));
        assert_eq!(
            summary.date.as_deref(),
            Some("Mon, 2 Jan 2023 10:00:00 +0000")
        );
        assert_eq!(summary.message_id, None);
    }

    #[test]
    fn huge_headers_are_capped() {
        let mut capture = HeaderCapture::new();
        let line =
            b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for _ in 0..10_000 {
            capture.feed(line);
        }
        assert_eq!(capture.bytes().len(), MAX_HEADER_BYTES);
        assert_eq!(capture.summary().subject, None);
    }
}
