//! Reading an mbox the way the mail clients that wrote it meant it, one message at a time.
//!
//! A message starts at a `From ` line. The first line of the file (after a UTF-8 byte-order
//! mark and blank lines) is one whatever it says; later ones count only when they look like a
//! real separator, `From SENDER` alone or followed by a date with a time and a year, **and**
//! the next line is a header field. That keeps the unescaped `From Russia with love` of an
//! mbox that never quoted its body lines (mboxo writers, Thunderbird) inside its message.
//!
//! A `Content-Length` header (mboxcl2, as Thunderbird, Netscape and some MTAs write) is
//! trusted when it points exactly at the end of the file or at the next `From ` line (an
//! optional blank line between), as mutt does; the body it covers is taken literally,
//! unquoted. A wrong one is ignored.
//!
//! Without it, quoted lines lose one `>`: [`Quoting::Rd`] un-quotes every `>+From ` line
//! (mboxrd, what popbackup's restore writes, exact), [`Quoting::O`] only `>From ` (mboxo,
//! whose writers quote `From ` lines but leave a line that was `>From ` as it was, so the two
//! cannot be told apart there).
//!
//! Line ends are kept as they are (LF or CRLF mboxes alike); a blank line before the next
//! separator (or at the end of the file) belongs to the mbox, not to the message, as readers
//! such as Python's `mailbox` and popbackup's restore see it.

use std::io::{self, BufRead};

/// How quoted `From ` lines outside a `Content-Length` body are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// mboxrd: one `>` less on every line matching `>+From `.
    Rd,
    /// mboxo: one `>` less on a line matching `>From ` only.
    O,
}

/// One message of an mbox.
#[derive(Debug)]
pub(crate) struct MboxMessage {
    /// Where its `From ` line starts in the file.
    pub offset: u64,
    /// Bytes it takes in the file: its `From ` line up to the next message's (or the end).
    pub span: u64,
    /// The `From ` line after `From `, without its line end.
    pub envelope: String,
    /// The message, un-quoted, line ends as in the file.
    pub bytes: Vec<u8>,
}

/// What the reader found next.
#[derive(Debug)]
pub(crate) enum MboxEntry {
    Message(MboxMessage),
    /// A message that cannot be taken whole (the file ends inside it): where and why.
    Damaged {
        offset: u64,
        detail: String,
    },
}

pub(crate) struct MboxReader<R> {
    reader: R,
    /// Lines given back after a look ahead, the next one last.
    pushed: Vec<Vec<u8>>,
    /// Bytes of the file consumed so far.
    pos: u64,
    quoting: Quoting,
    /// The next message's `From ` line and where it starts.
    next_from: Option<(u64, Vec<u8>)>,
}

impl<R: BufRead> MboxReader<R> {
    /// Starts reading; `Err` with a reason when the file is not an mbox.
    pub fn new(reader: R, quoting: Quoting) -> io::Result<Result<MboxReader<R>, String>> {
        let mut mbox = MboxReader {
            reader,
            pushed: Vec::new(),
            pos: 0,
            quoting,
            next_from: None,
        };
        let mut first = true;
        loop {
            let offset = mbox.pos;
            let Some(mut line) = mbox.line()? else {
                // An empty file is an empty mbox.
                return Ok(Ok(mbox));
            };
            if first && line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
                first = false;
                mbox.unread(line);
                continue;
            }
            first = false;
            if is_blank(&line) {
                continue;
            }
            if !line.starts_with(b"From ") {
                return Ok(Err(format!(
                    "it does not start with a `From ` line (at byte {offset}: {:?}), so it is \
                     not an mbox",
                    String::from_utf8_lossy(&line[..line.len().min(40)]).trim_end()
                )));
            }
            mbox.next_from = Some((offset, line));
            return Ok(Ok(mbox));
        }
    }

    /// The next message, or `None` at the end of the file.
    pub fn next_entry(&mut self) -> io::Result<Option<MboxEntry>> {
        let Some((offset, from_line)) = self.next_from.take() else {
            return Ok(None);
        };
        let envelope = String::from_utf8_lossy(trim_line_end(&from_line[5..])).into_owned();
        let mut bytes = Vec::new();
        // Length of the last line added when it was blank: the separator's, if a message
        // follows or the file ends.
        let mut blank_tail = 0;
        let mut content_length = None;
        // A Content-Length that the file ended before.
        let mut cut_short = None;
        let mut in_header = true;
        loop {
            if in_header {
                let Some(line) = self.line()? else { break };
                if self.is_separator(&line)? {
                    self.next_from = Some((self.pos - line.len() as u64, line));
                    break;
                }
                if is_blank(&line) {
                    in_header = false;
                    blank_tail = line.len();
                    bytes.extend_from_slice(&line);
                    match content_length.map(|n| (n, self.take_counted_body(n, &mut bytes))) {
                        Some((_, Err(e))) => return Err(e),
                        Some((_, Ok(CountedBody::Fits))) => {
                            blank_tail = 0;
                            if let Some(line) = self.line()? {
                                self.next_from = Some((self.pos - line.len() as u64, line));
                            }
                            break;
                        }
                        Some((n, Ok(CountedBody::Short))) => cut_short = Some(n),
                        _ => {}
                    }
                    continue;
                }
                if content_length.is_none() {
                    content_length = parse_content_length(&line);
                }
                blank_tail = 0;
                bytes.extend_from_slice(self.unquote(&line));
                continue;
            }
            let Some(line) = self.line()? else { break };
            if self.is_separator(&line)? {
                self.next_from = Some((self.pos - line.len() as u64, line));
                break;
            }
            blank_tail = if is_blank(&line) { line.len() } else { 0 };
            bytes.extend_from_slice(self.unquote(&line));
        }
        let end = self.next_from.as_ref().map_or(self.pos, |(next, _)| *next);
        if self.next_from.is_none() {
            let detail = if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
                Some(format!(
                    "the file ends in the middle of a line, {} bytes into the message that \
                     starts at byte {offset}: truncated?",
                    end - offset
                ))
            } else {
                cut_short.map(|n| {
                    format!(
                        "the message that starts at byte {offset} says Content-Length: {n}, \
                         but the file ends before that: truncated?"
                    )
                })
            };
            if let Some(detail) = detail {
                return Ok(Some(MboxEntry::Damaged { offset, detail }));
            }
        }
        bytes.truncate(bytes.len() - blank_tail);
        Ok(Some(MboxEntry::Message(MboxMessage {
            offset,
            span: end - offset,
            envelope,
            bytes,
        })))
    }

    /// After a header section that said `Content-Length: length`: takes that many bytes as
    /// the body, literally, if they end where the next message (or the file) begins, and
    /// says so; otherwise gives them back to be read line by line.
    fn take_counted_body(&mut self, length: u64, bytes: &mut Vec<u8>) -> io::Result<CountedBody> {
        let mut body = Vec::new();
        while (body.len() as u64) < length {
            let Some(line) = self.line()? else { break };
            body.extend_from_slice(&line);
        }
        let wanted = usize::try_from(length).unwrap_or(usize::MAX);
        let short = body.len() < wanted;
        let fits = if short {
            false
        } else {
            // Whatever the last line read holds beyond the count is given back.
            let rest = body.split_off(wanted);
            if !rest.is_empty() {
                self.unread(rest);
            }
            body.last().is_none_or(|b| *b == b'\n') && self.at_message_end()?
        };
        if fits {
            bytes.extend_from_slice(&body);
            return Ok(CountedBody::Fits);
        }
        for line in body.split_inclusive(|b| *b == b'\n').rev() {
            self.unread(line.to_vec());
        }
        Ok(if short {
            CountedBody::Short
        } else {
            CountedBody::Ignored
        })
    }

    /// True at the end of the file or before a `From ` line, an optional blank line between
    /// (which is then consumed, as the separator).
    fn at_message_end(&mut self) -> io::Result<bool> {
        let Some(first) = self.line()? else {
            return Ok(true);
        };
        if first.starts_with(b"From ") {
            self.unread(first);
            return Ok(true);
        }
        if is_blank(&first) {
            match self.line()? {
                None => return Ok(true),
                Some(second) => {
                    let from = second.starts_with(b"From ");
                    self.unread(second);
                    if from {
                        return Ok(true);
                    }
                }
            }
        }
        self.unread(first);
        Ok(false)
    }

    /// A `From ` line that starts the next message: one of the right form followed by a
    /// header field.
    fn is_separator(&mut self, line: &[u8]) -> io::Result<bool> {
        if !is_from_line(line) {
            return Ok(false);
        }
        let Some(next) = self.line()? else {
            return Ok(false);
        };
        let header = is_header_field(&next);
        self.unread(next);
        Ok(header)
    }

    fn unquote<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        let quotes = line.iter().take_while(|b| **b == b'>').count();
        let quoted = match self.quoting {
            Quoting::Rd => quotes > 0,
            Quoting::O => quotes == 1,
        };
        if quoted && line[quotes..].starts_with(b"From ") {
            &line[1..]
        } else {
            line
        }
    }

    /// The next line with its line end (the last may have none), or `None` at the end.
    fn line(&mut self) -> io::Result<Option<Vec<u8>>> {
        if let Some(line) = self.pushed.pop() {
            self.pos += line.len() as u64;
            return Ok(Some(line));
        }
        let mut line = Vec::new();
        let n = self.reader.read_until(b'\n', &mut line)?;
        self.pos += n as u64;
        Ok((n > 0).then_some(line))
    }

    fn unread(&mut self, line: Vec<u8>) {
        self.pos -= line.len() as u64;
        self.pushed.push(line);
    }
}

enum CountedBody {
    /// Taken, literally.
    Fits,
    /// It does not end where a message does: read line by line.
    Ignored,
    /// The file ends before it does.
    Short,
}

fn is_blank(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `From SENDER` alone, or followed by a date that has a time (`H:MM`) and a year.
fn is_from_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let rest = trim_line_end(rest);
    let mut parts = rest.splitn(2, |b| *b == b' ');
    let sender = parts.next().unwrap_or_default();
    if sender.is_empty() {
        return false;
    }
    let date = parts.next().unwrap_or_default().trim_ascii();
    if date.is_empty() {
        return true;
    }
    let has_time = date.windows(4).any(|w| {
        w[0].is_ascii_digit() && w[1] == b':' && w[2].is_ascii_digit() && w[3].is_ascii_digit()
    });
    let has_year = date
        .split(|b| !b.is_ascii_digit())
        .any(|digits| digits.len() == 4);
    has_time && has_year
}

/// `Name:` at the start of the line, the name printable ASCII without space or colon.
fn is_header_field(line: &[u8]) -> bool {
    let name_len = line
        .iter()
        .take_while(|b| b.is_ascii_graphic() && **b != b':')
        .count();
    name_len > 0 && line.get(name_len) == Some(&b':')
}

fn parse_content_length(line: &[u8]) -> Option<u64> {
    const NAME: &[u8] = b"content-length:";
    if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return None;
    }
    std::str::from_utf8(&line[NAME.len()..])
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], quoting: Quoting) -> Vec<MboxEntry> {
        let mut reader = MboxReader::new(text, quoting).unwrap().unwrap();
        let mut out = Vec::new();
        while let Some(entry) = reader.next_entry().unwrap() {
            out.push(entry);
        }
        out
    }

    fn messages(text: &[u8], quoting: Quoting) -> Vec<(u64, u64, String, String)> {
        read(text, quoting)
            .into_iter()
            .map(|e| match e {
                MboxEntry::Message(m) => (
                    m.offset,
                    m.span,
                    m.envelope,
                    String::from_utf8(m.bytes).unwrap(),
                ),
                MboxEntry::Damaged { detail, .. } => panic!("{detail}"),
            })
            .collect()
    }

    #[test]
    fn separators_need_their_form_and_a_header_after_them() {
        let text = b"\xEF\xBB\xBFFrom -\nSubject: a\n\nFrom Russia with love\nYear: 1963\n\n\
                     From here on\nSubject: not one either\n\
                     From a@b Mon Jan  1 10:00:00 2001\nSubject: b\n\n>From x\n>>From y\n\n";
        let got = messages(text, Quoting::Rd);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 3);
        assert_eq!(got[0].2, "-");
        assert_eq!(
            got[0].3,
            "Subject: a\n\nFrom Russia with love\nYear: 1963\n\nFrom here on\nSubject: not one \
             either\n"
        );
        assert_eq!(got[1].2, "a@b Mon Jan  1 10:00:00 2001");
        assert_eq!(got[1].3, "Subject: b\n\nFrom x\n>From y\n");
        assert_eq!(got[0].0 + got[0].1, got[1].0);
        assert_eq!(got[1].0 + got[1].1, text.len() as u64);
        let mboxo = messages(text, Quoting::O);
        assert_eq!(mboxo[1].3, "Subject: b\n\nFrom x\n>>From y\n");
    }

    #[test]
    fn a_content_length_that_fits_is_taken_literally_and_a_wrong_one_ignored() {
        let body = "From x Mon Jan  1 10:00:00 2001\nDate: y\n>From z\n";
        let text = format!(
            "From a\nContent-Length: {}\n\n{body}\nFrom b\nContent-Length: 3\n\nno\n>From w\n\n\
             From c\nSubject: last\n\nend\n",
            body.len()
        );
        let got = messages(text.as_bytes(), Quoting::Rd);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(
            got[0].3,
            format!("Content-Length: {}\n\n{body}", body.len())
        );
        assert_eq!(got[1].3, "Content-Length: 3\n\nno\nFrom w\n");
        assert_eq!(got[2].3, "Subject: last\n\nend\n");
        // At the end of the file, too.
        let last = "From a\nContent-Length: 4\n\nab\n\n";
        assert_eq!(
            messages(last.as_bytes(), Quoting::Rd)[0].3,
            "Content-Length: 4\n\nab\n\n"
        );
    }

    #[test]
    fn crlf_mboxes_keep_their_line_ends_and_truncation_is_named() {
        let text = b"From a Thu Sep 18 17:54:04 2008\r\nSubject: x\r\n\r\nbody\r\n\r\n\
                     From b Thu Sep 18 17:54:05 2008\r\nSubject: y\r\n\r\nbo";
        let got = read(text, Quoting::Rd);
        assert_eq!(got.len(), 2);
        match &got[0] {
            MboxEntry::Message(m) => {
                assert_eq!(m.bytes, b"Subject: x\r\n\r\nbody\r\n");
                assert_eq!(m.envelope, "a Thu Sep 18 17:54:04 2008");
            }
            other => panic!("{other:?}"),
        }
        match &got[1] {
            MboxEntry::Damaged { offset, detail } => {
                assert_eq!(*offset, 55);
                assert!(detail.contains("truncated"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_is_not_an_mbox_is_refused() {
        let err = MboxReader::new(&b"Subject: x\n\nhello\n"[..], Quoting::Rd)
            .unwrap()
            .err()
            .unwrap();
        assert!(err.contains("not an mbox"), "{err}");
        assert!(read(b"", Quoting::Rd).is_empty());
        assert!(read(b"\n\n", Quoting::Rd).is_empty());
    }
}
