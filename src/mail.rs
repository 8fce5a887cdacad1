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
        headers
            .get_first_header(name)
            .and_then(|h| display_value(&h.get_value()))
    };
    HeaderSummary {
        date: field("Date"),
        from: field("From"),
        subject: field("Subject"),
        message_id: field("Message-ID"),
    }
}

/// A header value as a listing shows it: words separated by one space, control characters
/// dropped, at most `MAX_FIELD_CHARS` characters; `None` when nothing is left. One pass into
/// one string: it runs for four fields of every message a snapshot downloads.
fn display_value(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len().min(4 * MAX_FIELD_CHARS));
    let mut chars = 0;
    'words: for (i, word) in value.split_whitespace().enumerate() {
        // A word that is all control characters still had its separator.
        let separator = (i > 0).then_some(' ');
        for c in separator
            .into_iter()
            .chain(word.chars().filter(|c| !c.is_control()))
        {
            if chars == MAX_FIELD_CHARS {
                break 'words;
            }
            out.push(c);
            chars += 1;
        }
    }
    // Kept for every message of the run: without the slack of a growing string.
    out.shrink_to_fit();
    (!out.is_empty()).then_some(out)
}

/// A writer that turns the wire form's line ends into LF on the way to `inner` (the on-disk
/// form of a message), streaming.
///
/// A CRLF becomes LF, except where its CR follows another CR (`\r\r\n`, a line that really ends
/// in a CR): that stays as it is, because mail software reading LF files (Dovecot, mutt) takes
/// `\r\n` for a line end and would lose the CR. The inverse is therefore "put a CR before every
/// LF that has none" — exactly what Dovecot does when it serves a Maildir file — and it gives
/// back the archived bytes for every message without a bare LF ([`CrlfToLf::reversible`]).
pub struct CrlfToLf<W> {
    inner: W,
    /// CRs seen at the end of the last write, not yet written.
    cr_run: usize,
    /// A bare LF was seen: the conversion cannot be undone exactly.
    irreversible: bool,
    last: Option<u8>,
}

impl<W: std::io::Write> CrlfToLf<W> {
    pub fn new(inner: W) -> CrlfToLf<W> {
        CrlfToLf {
            inner,
            cr_run: 0,
            irreversible: false,
            last: None,
        }
    }

    /// Writes CRs still held back (a message ending in CR) and returns the inner writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.flush_crs(false)?;
        Ok(self.inner)
    }

    /// True if [`lf_to_crlf`] of the output gives the input exactly.
    pub fn reversible(&self) -> bool {
        !self.irreversible
    }

    /// The last byte written to the inner writer.
    pub fn last_byte(&self) -> Option<u8> {
        self.last
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Writes the held-back CRs; `before_lf` says an LF follows, so a lone CR is dropped.
    fn flush_crs(&mut self, before_lf: bool) -> std::io::Result<()> {
        let keep = if before_lf && self.cr_run == 1 {
            0
        } else {
            self.cr_run
        };
        for _ in 0..keep {
            self.inner.write_all(b"\r")?;
            self.last = Some(b'\r');
        }
        self.cr_run = 0;
        Ok(())
    }
}

impl<W: std::io::Write> std::io::Write for CrlfToLf<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(&first) = rest.first() {
            match first {
                b'\r' => {
                    self.cr_run += 1;
                    rest = &rest[1..];
                }
                b'\n' => {
                    if self.cr_run == 0 {
                        self.irreversible = true;
                    }
                    self.flush_crs(true)?;
                    self.inner.write_all(b"\n")?;
                    self.last = Some(b'\n');
                    rest = &rest[1..];
                }
                _ => {
                    self.flush_crs(false)?;
                    let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    self.inner.write_all(&rest[..end])?;
                    self.last = Some(rest[end - 1]);
                    rest = &rest[end..];
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A CR before every LF that has none: the inverse of [`CrlfToLf`] (and what Dovecot does to
/// a Maildir file it serves).
pub fn lf_to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_lf(input: &[u8], chunk: usize) -> (Vec<u8>, bool) {
        use std::io::Write as _;
        let mut w = CrlfToLf::new(Vec::new());
        for c in input.chunks(chunk) {
            w.write_all(c).unwrap();
        }
        let reversible = w.reversible();
        (w.finish().unwrap(), reversible)
    }

    #[test]
    fn crlf_to_lf_streams_and_knows_when_it_is_reversible() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"a\r\nb\r\n", b"a\nb\n", true),
            (b"a\r\n\r\n", b"a\n\n", true),
            (b"bare\nlf\r\n", b"bare\nlf\n", false),
            (b"bare\rcr\r\n", b"bare\rcr\n", true),
            (b"ends in cr\r", b"ends in cr\r", true),
            (b"\r\r\n", b"\r\r\n", true),
            (b"x\r\r\r\ny\r\n", b"x\r\r\r\ny\n", true),
            (b"\r\n\n", b"\n\n", false),
            (b"\n", b"\n", false),
            (b"", b"", true),
        ];
        for (input, expected, reversible) in cases {
            for chunk in 1..=input.len().max(1) {
                let (out, rev) = to_lf(input, chunk);
                assert_eq!(&out, expected, "{input:?} in chunks of {chunk}");
                assert_eq!(rev, *reversible, "{input:?} in chunks of {chunk}");
                if rev {
                    assert_eq!(lf_to_crlf(&out), *input);
                }
            }
        }
    }

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

    /// What `display_value` replaced: the same result in three passes and four strings.
    fn display_value_in_steps(value: &str) -> Option<String> {
        let value: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
        let value: String = value
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_FIELD_CHARS)
            .collect();
        (!value.is_empty()).then_some(value)
    }

    #[test]
    fn display_values_are_what_they_were() {
        let long = "word ".repeat(400);
        let mut values: Vec<String> = [
            "",
            "   ",
            "\t\r\n",
            "plain",
            "  two   words  ",
            "a \u{1} b",
            "\u{1}\u{2}",
            "x\u{7f}y\u{85}z",
            "tab\there\u{a0}nbsp\u{2003}em",
            "Grüße, 日本語 \u{200b} zero-width",
            long.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        values.push(format!("{}\u{1}{}", "é".repeat(997), "abc"));
        values.push(format!("{} {}", "a".repeat(997), "bcd"));
        // Every Date, From, Subject and Message-ID of the corpus, decoded.
        match std::env::var("POPBACKUP_CORPUS") {
            Ok(dir) if !dir.is_empty() => {
                let before = values.len();
                let messages = std::path::Path::new(&dir).join("messages");
                for entry in walkdir::WalkDir::new(&messages) {
                    let entry = entry.unwrap();
                    if !entry.file_type().is_file() {
                        continue;
                    }
                    let bytes = std::fs::read(entry.path()).unwrap();
                    let end = header_end(&bytes)
                        .unwrap_or(bytes.len())
                        .min(MAX_HEADER_BYTES);
                    if let Ok((headers, _)) = mailparse::parse_headers(&bytes[..end]) {
                        use mailparse::MailHeaderMap as _;
                        for name in ["Date", "From", "Subject", "Message-ID"] {
                            if let Some(h) = headers.get_first_header(name) {
                                values.push(h.get_value());
                            }
                        }
                    }
                }
                assert!(
                    values.len() > before + 1000,
                    "{} corpus fields",
                    values.len() - before
                );
            }
            _ => assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI=true but POPBACKUP_CORPUS is not set"
            ),
        }
        for value in &values {
            assert_eq!(
                display_value(value),
                display_value_in_steps(value),
                "{value:?}"
            );
        }
        assert_eq!(display_value("a \u{1} b").as_deref(), Some("a  b"));
        assert_eq!(
            display_value(&long).map(|v| v.chars().count()),
            Some(MAX_FIELD_CHARS)
        );
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
