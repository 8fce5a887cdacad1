//! Pure parsers for what a POP3 server sends: status lines with `[RESP-CODES]`, CAPA, UIDL,
//! LIST and STAT. No I/O happens here; the parsers are tolerant where real servers are sloppy
//! (case, runs of spaces and tabs, trailing blanks) and strict where a mistake would corrupt the
//! archive (message numbers, sizes).

use super::error::RespCode;

/// A status line: `+OK text`, `-ERR [CODE] text` or a SASL continuation `+ data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Ok(String),
    Err {
        code: Option<RespCode>,
        text: String,
    },
    /// `+ ` (RFC 5034 continuation) with its base64 payload, possibly empty.
    Continue(String),
}

/// Parses one status line (without its CRLF). `None` means it is neither `+OK` nor `-ERR`:
/// the server is out of step with us or is not a POP3 server.
pub fn parse_status(line: &[u8]) -> Option<Status> {
    let line = trim_eol(line);
    let text = String::from_utf8_lossy(line);
    if let Some(rest) = strip_prefix_ci(&text, "+OK") {
        if rest.is_empty() || rest.starts_with([' ', '\t']) {
            return Some(Status::Ok(rest.trim_start().to_string()));
        }
        return None;
    }
    if let Some(rest) = strip_prefix_ci(&text, "-ERR") {
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            return None;
        }
        let (code, text) = split_resp_code(rest.trim_start());
        return Some(Status::Err { code, text });
    }
    if text == "+" {
        return Some(Status::Continue(String::new()));
    }
    if let Some(rest) = text.strip_prefix("+ ") {
        return Some(Status::Continue(rest.trim().to_string()));
    }
    None
}

/// Splits `[CODE] text` into the code and the rest (RFC 2449 section 8).
fn split_resp_code(text: &str) -> (Option<RespCode>, String) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some(end) = rest.find(']')
    {
        let code = RespCode::parse(&rest[..end]);
        return (Some(code), rest[end + 1..].trim_start().to_string());
    }
    (None, text.to_string())
}

/// The APOP timestamp `<...>` of a greeting (RFC 1939 section 7), if the server sent one.
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    // A timestamp is a msg-id: it has an '@' and no spaces.
    (stamp.contains('@') && !stamp.contains(char::is_whitespace)).then_some(stamp)
}

/// One capability line of a CAPA response: an upper-cased tag and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capability {
    pub tag: String,
    pub args: Vec<String>,
}

/// The capabilities a server announced (RFC 2449 section 6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    entries: Vec<Capability>,
}

impl Capabilities {
    /// Parses the body of a CAPA response; tags are matched case-insensitively, blank lines and
    /// extra whitespace are ignored.
    pub fn parse(body: &[u8]) -> Capabilities {
        let entries = lines(body)
            .filter_map(|line| {
                let text = String::from_utf8_lossy(line);
                let mut words = text.split_ascii_whitespace();
                let tag = words.next()?.to_ascii_uppercase();
                Some(Capability {
                    tag,
                    args: words.map(str::to_string).collect(),
                })
            })
            .collect();
        Capabilities { entries }
    }

    /// The entries in the server's order, for the snapshot manifest.
    pub fn entries(&self) -> &[Capability] {
        &self.entries
    }

    fn get(&self, tag: &str) -> Option<&Capability> {
        self.entries
            .iter()
            .find(|c| c.tag.eq_ignore_ascii_case(tag))
    }

    pub fn has(&self, tag: &str) -> bool {
        self.get(tag).is_some()
    }

    pub fn pipelining(&self) -> bool {
        self.has("PIPELINING")
    }

    pub fn stls(&self) -> bool {
        self.has("STLS")
    }

    pub fn top(&self) -> bool {
        self.has("TOP")
    }

    pub fn uidl(&self) -> bool {
        self.has("UIDL")
    }

    pub fn user(&self) -> bool {
        self.has("USER")
    }

    /// The SASL mechanisms, upper-cased.
    pub fn sasl(&self) -> Vec<String> {
        self.get("SASL")
            .map(|c| c.args.iter().map(|a| a.to_ascii_uppercase()).collect())
            .unwrap_or_default()
    }

    pub fn has_sasl(&self, mechanism: &str) -> bool {
        self.sasl()
            .iter()
            .any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    /// `EXPIRE` as announced: `Some("0")` means the server deletes mail after retrieval.
    pub fn expire(&self) -> Option<String> {
        self.get("EXPIRE").map(|c| c.args.join(" "))
    }

    /// `LOGIN-DELAY` seconds, when announced.
    pub fn login_delay(&self) -> Option<u64> {
        self.get("LOGIN-DELAY")?.args.first()?.parse().ok()
    }

    /// `IMPLEMENTATION` text, when announced.
    pub fn implementation(&self) -> Option<String> {
        self.get("IMPLEMENTATION").map(|c| c.args.join(" "))
    }
}

/// One line of a UIDL listing. Duplicate UIDLs are legal (RFC 1939 section 7) and are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlEntry {
    pub msg: u32,
    pub uidl: Uidl,
}

/// A server's unique id for a message. RFC 1939 says 1-70 characters in 0x21-0x7E; real servers
/// send longer ones and non-ASCII bytes, which are kept: bytes that are not UTF-8 are written as
/// `\xHH` so the id stays a printable, stable string.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Uidl(String);

impl Uidl {
    pub fn new(id: impl Into<String>) -> Uidl {
        Uidl(id.into())
    }

    fn from_bytes(bytes: &[u8]) -> Uidl {
        match std::str::from_utf8(bytes) {
            Ok(s) => Uidl(s.to_string()),
            Err(_) => {
                let mut out = String::new();
                for chunk in bytes.utf8_chunks() {
                    out.push_str(chunk.valid());
                    for b in chunk.invalid() {
                        out.push_str(&format!("\\x{b:02X}"));
                    }
                }
                Uidl(out)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Uidl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line of a LIST listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    pub msg: u32,
    pub size: u64,
}

/// The answer to STAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub count: u32,
    pub size: u64,
}

/// Why a listing line could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: String,
}

/// Parses `n uid` (a UIDL listing line or the text of `+OK n uid`). Any run of spaces or tabs
/// separates the fields; the uid is the rest of the line with outer blanks removed, so servers
/// that put spaces inside uids still give a stable id.
pub fn parse_uidl_line(line: &[u8]) -> Result<UidlEntry, BadLine> {
    let line = trim_blank(trim_eol(line));
    let (num, rest) = split_word(line);
    let msg = parse_msg_number(num).ok_or_else(|| bad(line))?;
    let uid = trim_blank(rest);
    if uid.is_empty() {
        return Err(bad(line));
    }
    Ok(UidlEntry {
        msg,
        uidl: Uidl::from_bytes(uid),
    })
}

/// Parses `n size [extra]` (a LIST listing line or the text of `+OK n size`).
pub fn parse_list_line(line: &[u8]) -> Result<ListEntry, BadLine> {
    let line = trim_blank(trim_eol(line));
    let (num, rest) = split_word(line);
    let (size, _extension) = split_word(trim_blank(rest));
    let msg = parse_msg_number(num).ok_or_else(|| bad(line))?;
    let size = parse_decimal(size).ok_or_else(|| bad(line))?;
    Ok(ListEntry { msg, size })
}

/// Parses the text of `+OK count size`.
pub fn parse_stat(text: &str) -> Result<Stat, BadLine> {
    let line = trim_blank(text.as_bytes());
    let (count, rest) = split_word(line);
    let (size, _) = split_word(trim_blank(rest));
    let count = parse_decimal(count).and_then(|n| u32::try_from(n).ok());
    match (count, parse_decimal(size)) {
        (Some(count), Some(size)) => Ok(Stat { count, size }),
        _ => Err(bad(line)),
    }
}

/// Parses a whole UIDL listing body.
pub fn parse_uidl_listing(body: &[u8]) -> Result<Vec<UidlEntry>, BadLine> {
    lines(body).map(parse_uidl_line).collect()
}

/// Parses a whole LIST listing body.
pub fn parse_list_listing(body: &[u8]) -> Result<Vec<ListEntry>, BadLine> {
    lines(body).map(parse_list_line).collect()
}

/// Non-blank lines of a listing body, split at LF with the CR removed.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(trim_eol)
        .filter(|l| !trim_blank(l).is_empty())
}

fn bad(line: &[u8]) -> BadLine {
    let mut text = String::from_utf8_lossy(line).into_owned();
    if text.len() > 80 {
        let mut cut = 80;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    BadLine {
        line: text.escape_debug().to_string(),
    }
}

fn parse_msg_number(word: &[u8]) -> Option<u32> {
    let n = parse_decimal(word)?;
    // Message numbers start at 1 (RFC 1939 section 3).
    u32::try_from(n).ok().filter(|&n| n >= 1)
}

fn parse_decimal(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 19 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|b| matches!(b, b' ' | b'\t')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, &[]),
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_blank(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status(b"+OK ready\r\n"),
            Some(Status::Ok("ready".into()))
        );
        assert_eq!(parse_status(b"+OK"), Some(Status::Ok(String::new())));
        assert_eq!(parse_status(b"+ok fine"), Some(Status::Ok("fine".into())));
        assert_eq!(
            parse_status(b"-ERR [IN-USE] locked"),
            Some(Status::Err {
                code: Some(RespCode::InUse),
                text: "locked".into()
            })
        );
        assert_eq!(
            parse_status(b"-ERR [sys/temp] try later"),
            Some(Status::Err {
                code: Some(RespCode::SysTemp),
                text: "try later".into()
            })
        );
        assert_eq!(
            parse_status(b"-ERR no such message"),
            Some(Status::Err {
                code: None,
                text: "no such message".into()
            })
        );
        assert_eq!(parse_status(b"+ "), Some(Status::Continue(String::new())));
        assert_eq!(
            parse_status(b"+ VXNlcm5hbWU6"),
            Some(Status::Continue("VXNlcm5hbWU6".into()))
        );
        assert_eq!(parse_status(b"+OKAY"), None);
        assert_eq!(parse_status(b"* OK IMAP"), None);
        assert_eq!(parse_status(b"garbage"), None);
        assert_eq!(parse_status(b""), None);
    }

    #[test]
    fn greeting_timestamp() {
        assert_eq!(
            apop_timestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Some("<1896.697170952@dbc.mtview.ca.us>")
        );
        assert_eq!(apop_timestamp("Dovecot ready."), None);
        assert_eq!(apop_timestamp("ready <no at sign>"), None);
    }

    #[test]
    fn capa_is_case_insensitive_and_tolerant() {
        let caps = Capabilities::parse(
            b"top\r\nuidl\r\n  \r\nsasl plain  LOGIN\txoauth2\r\nPipelining\r\nEXPIRE 0\r\n\
              LOGIN-DELAY 300\r\nIMPLEMENTATION Gmail POP\r\n",
        );
        assert!(caps.top() && caps.uidl() && caps.pipelining());
        assert!(!caps.stls() && !caps.user());
        assert_eq!(caps.sasl(), vec!["PLAIN", "LOGIN", "XOAUTH2"]);
        assert!(caps.has_sasl("login"));
        assert_eq!(caps.expire().as_deref(), Some("0"));
        assert_eq!(caps.login_delay(), Some(300));
        assert_eq!(caps.implementation().as_deref(), Some("Gmail POP"));
        assert_eq!(caps.entries().len(), 7);
    }

    #[test]
    fn uidl_lines_with_odd_whitespace() {
        let e = parse_uidl_line(b"1 whqtswO00WBw418f9t5JxYwZ\r\n").unwrap();
        assert_eq!((e.msg, e.uidl.as_str()), (1, "whqtswO00WBw418f9t5JxYwZ"));
        let e = parse_uidl_line(b"  12 \t  abc def  \t").unwrap();
        assert_eq!((e.msg, e.uidl.as_str()), (12, "abc def"));
        let e = parse_uidl_line(b"3 caf\xc3\xa9\xff").unwrap();
        assert_eq!(e.uidl.as_str(), "caf\u{e9}\\xFF");
        assert!(parse_uidl_line(b"x abc").is_err());
        assert!(parse_uidl_line(b"0 abc").is_err());
        assert!(parse_uidl_line(b"4").is_err());
        assert!(parse_uidl_line(b"99999999999 abc").is_err());
        let all = parse_uidl_listing(b"1 a\r\n2 a\r\n\r\n3 b\r\n").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].uidl, all[1].uidl, "duplicates are kept");
    }

    #[test]
    fn list_and_stat() {
        assert_eq!(
            parse_list_line(b"2 4096").unwrap(),
            ListEntry { msg: 2, size: 4096 }
        );
        assert_eq!(parse_list_line(b"2\t\t4096 extra").unwrap().size, 4096);
        assert!(parse_list_line(b"2 -1").is_err());
        assert!(parse_list_line(b"2").is_err());
        assert_eq!(
            parse_stat("5 1200").unwrap(),
            Stat {
                count: 5,
                size: 1200
            }
        );
        assert_eq!(parse_stat("0 0").unwrap(), Stat { count: 0, size: 0 });
        assert!(parse_stat("many").is_err());
        let all = parse_list_listing(b"1 10\r\n2 20\r\n").unwrap();
        assert_eq!(all[1], ListEntry { msg: 2, size: 20 });
        let err = parse_list_listing(b"1 10\r\nnonsense here\r\n").unwrap_err();
        assert_eq!(err.line, "nonsense here");
    }
}
