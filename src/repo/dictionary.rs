//! Making the zstd dictionaries that small messages are compressed with.
//!
//! Two kinds of dictionary are made from the same sampled messages, and the writer keeps
//! whichever compresses messages it was not made from best (`RepoWriter::train_dictionary`):
//!
//! - **trained**: zstd's trainer picks the pieces that recur most across the samples. Best
//!   when every message is made of the same small vocabulary (the benchmark's generated mail).
//! - **recent mail**: the trained dictionary's header (its entropy tables) followed by the
//!   sampled messages themselves, the most recent last. Real mail quotes, forwards and bounces
//!   earlier mail, which a solid archive finds in its window and a frame per message can only
//!   find in its dictionary. On the corpus's real mail, such a dictionary of 1 MiB makes
//!   frames 10-20 % smaller than a trained one of 256 KiB.
//!
//! A zstd dictionary (RFC 8878, section 5) is: magic, id, entropy tables (literals' Huffman
//! table, then the FSE tables of offsets, match lengths and literal lengths), three repeat
//! offsets, and the content. Splicing needs only the length of that header, found by reading
//! the tables' descriptions ([`header_len`]). A wrong length could not make a wrong archive —
//! a frame is always decoded with the very bytes it was made with, and every frame is checked
//! when it is made — only a dictionary zstd refuses, which is then not used.

/// The magic number that starts a zstd dictionary, little-endian.
const MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];

/// The largest symbol of each FSE table in a dictionary's header, in their order there:
/// offset codes, match length codes, literal length codes.
const FSE_MAX_SYMBOLS: [usize; 3] = [31, 52, 35];

/// Three repeat offsets of 4 bytes each end the header.
const REPEAT_OFFSETS_LEN: usize = 12;

/// The largest accuracy log an FSE table description may give.
const MAX_ACCURACY_LOG: u32 = 9;

/// Trains a dictionary of at most `size` bytes from `samples`, the messages back to back
/// with their lengths in `sizes`. `None` when zstd finds nothing worth a dictionary.
pub fn train(samples: &[u8], sizes: &[usize], size: usize) -> Option<Vec<u8>> {
    zstd::dict::from_continuous(samples, sizes, size).ok()
}

/// A dictionary with `trained`'s header and, as its content, the end of `recent` (at most
/// `max_content` bytes of it): zstd references content near the end most cheaply. `None` when
/// `trained` is not a zstd dictionary whose header can be read.
pub fn with_content(trained: &[u8], recent: &[u8], max_content: usize) -> Option<Vec<u8>> {
    let header = header_len(trained)?;
    let content = &recent[recent.len().saturating_sub(max_content)..];
    // zstd requires the content to hold every repeat offset; 8 is its largest default.
    if content.len() < 8 {
        return None;
    }
    let mut dictionary = Vec::with_capacity(header + content.len());
    dictionary.extend_from_slice(&trained[..header]);
    dictionary.extend_from_slice(content);
    Some(dictionary)
}

/// The length of a zstd dictionary's header (everything before its content), read from the
/// descriptions of its entropy tables; `None` when `dictionary` is not one.
pub fn header_len(dictionary: &[u8]) -> Option<usize> {
    if dictionary.get(..4)? != MAGIC {
        return None;
    }
    // Magic and dictionary id.
    let mut at = 8;
    // The literals' Huffman table: a header byte below 128 is the size of the FSE-compressed
    // weights that follow; from 128 up, (byte - 127) weights follow, two to a byte.
    let huffman = usize::from(*dictionary.get(at)?);
    at += 1 + if huffman < 128 {
        huffman
    } else {
        (huffman - 127).div_ceil(2)
    };
    for max_symbol in FSE_MAX_SYMBOLS {
        at += fse_description_len(dictionary.get(at..)?, max_symbol)?;
    }
    at += REPEAT_OFFSETS_LEN;
    (at <= dictionary.len()).then_some(at)
}

/// The length in bytes of the FSE table description at the start of `bytes` (RFC 8878,
/// section 4.1.1): an accuracy log, then each symbol's probability in a variable number of
/// bits until the probabilities add up, with runs of zero probabilities as 2-bit repeat flags.
fn fse_description_len(bytes: &[u8], max_symbol: usize) -> Option<usize> {
    let mut bits = Bits { bytes, at: 0 };
    let accuracy_log = bits.read(4)? + 5;
    if accuracy_log > MAX_ACCURACY_LOG {
        return None;
    }
    // Probabilities still to be handed out, plus one (a probability of -1 counts as 1).
    let mut remaining: i64 = (1 << accuracy_log) + 1;
    let mut threshold: i64 = 1 << accuracy_log;
    let mut width = accuracy_log + 1;
    let mut symbol = 0;
    while remaining > 1 && symbol <= max_symbol {
        // Small values take one bit less than large ones.
        let largest_short = 2 * threshold - 1 - remaining;
        let short = i64::from(bits.peek(width - 1)?);
        let value = if short < largest_short {
            bits.skip(width - 1);
            short
        } else {
            let long = i64::from(bits.read(width)?);
            if long >= threshold {
                long - largest_short
            } else {
                long
            }
        };
        let probability = value - 1;
        remaining -= probability.abs();
        symbol += 1;
        if probability == 0 {
            // How many more symbols have probability zero: 2-bit counts, 3 meaning "and more".
            loop {
                let repeat = bits.read(2)?;
                symbol += repeat as usize;
                if repeat != 3 {
                    break;
                }
            }
        }
        while remaining < threshold {
            width -= 1;
            threshold >>= 1;
        }
    }
    (remaining == 1).then(|| bits.at.div_ceil(8))
}

/// A little-endian bit reader: bit `at` is bit `at % 8` of byte `at / 8`.
struct Bits<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    /// The next `n` (at most 16) bits as a number, without consuming them.
    fn peek(&self, n: u32) -> Option<u32> {
        let mut value = 0;
        for i in 0..n as usize {
            let at = self.at + i;
            let bit = (self.bytes.get(at / 8)? >> (at % 8)) & 1;
            value |= u32::from(bit) << i;
        }
        Some(value)
    }

    fn skip(&mut self, n: u32) {
        self.at += n as usize;
    }

    fn read(&mut self, n: u32) -> Option<u32> {
        let value = self.peek(n)?;
        self.skip(n);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages of a few kinds, each line varied a little, as mail is.
    fn samples(count: usize) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut sizes = Vec::new();
        for i in 0..count {
            let message = format!(
                "Received: from mx{}.example.net by pop.example.org\r\nFrom: Sender {} \
                 <s{}@example.net>\r\nSubject: report number {} about {}\r\nMessage-ID: \
                 <{:x}.{}@example.net>\r\n\r\nHello,\r\nthe figures for week {} are attached; \
                 the total is {} and the mean {}.\r\nRegards,\r\n{}\r\n",
                i % 7,
                i % 13,
                i % 13,
                i,
                ["sales", "support", "stock", "travel"][i % 4],
                i * 7919,
                i,
                i % 52,
                i * 31,
                i % 97,
                ["Ann", "Bob", "Cleo"][i % 3]
            );
            sizes.push(message.len());
            bytes.extend_from_slice(message.as_bytes());
        }
        (bytes, sizes)
    }

    /// zstd's trainer writes the repeat offsets 1, 4 and 8 as the last 12 bytes of the
    /// header: finding them right where the header is said to end shows that every table
    /// description before them was read to its exact length.
    fn ends_with_default_repeat_offsets(dictionary: &[u8], header: usize) -> bool {
        let reps: Vec<u32> = dictionary[header - 12..header]
            .chunks(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        reps == [1, 4, 8]
    }

    #[test]
    fn header_len_ends_exactly_at_the_repeat_offsets_of_trained_dictionaries() {
        for (count, size) in [(300, 4096), (600, 16 * 1024), (1200, 64 * 1024)] {
            let (bytes, sizes) = samples(count);
            let dictionary = train(&bytes, &sizes, size.min(bytes.len() / 4)).unwrap();
            let header = header_len(&dictionary).unwrap();
            assert!(header > 8 + 12 && header < dictionary.len());
            assert!(ends_with_default_repeat_offsets(&dictionary, header));
        }
    }

    #[test]
    fn a_dictionary_with_recent_content_is_accepted_by_zstd_and_finds_that_content() {
        let (bytes, sizes) = samples(400);
        let trained = train(&bytes, &sizes, 8 * 1024).unwrap();
        // Content no trained dictionary would have: bytes that do not compress on their own.
        let mut recent = Vec::new();
        let mut x: u32 = 0x9E37_79B9;
        for _ in 0..64 * 1024 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            recent.push(x as u8);
        }
        let dictionary = with_content(&trained, &recent, 1 << 20).unwrap();
        assert_eq!(
            dictionary.len(),
            header_len(&trained).unwrap() + recent.len()
        );
        assert_eq!(
            crate::repo::pack::zstd_dict_id(&dictionary),
            crate::repo::pack::zstd_dict_id(&trained)
        );
        let message = &recent[10_000..14_000];
        let frame = zstd::bulk::Compressor::with_dictionary(3, &dictionary)
            .unwrap()
            .compress(message)
            .unwrap();
        assert!(frame.len() < 100, "{} bytes", frame.len());
        let back = zstd::bulk::Decompressor::with_dictionary(&dictionary)
            .unwrap()
            .decompress(&frame, message.len())
            .unwrap();
        assert_eq!(back, message);
        // Only the end of long content is kept.
        let short = with_content(&trained, &recent, 1000).unwrap();
        assert!(short.ends_with(&recent[recent.len() - 1000..]));
        assert_eq!(short.len(), header_len(&trained).unwrap() + 1000);
    }

    #[test]
    fn header_len_refuses_what_is_not_a_dictionary_without_panicking() {
        let (bytes, sizes) = samples(300);
        let dictionary = train(&bytes, &sizes, 4096).unwrap();
        let header = header_len(&dictionary).unwrap();
        assert_eq!(header_len(b"not a dictionary"), None);
        assert_eq!(header_len(&[]), None);
        assert_eq!(with_content(b"raw bytes", b"content here", 100), None);
        // Every cut inside the header, and damaged tables, are refused or read to an end
        // within the bytes: never a panic.
        for cut in 0..header {
            assert_eq!(header_len(&dictionary[..cut]), None, "cut at {cut}");
        }
        let mut damaged = dictionary.clone();
        for i in 8..header {
            for flip in [0x01, 0x10, 0xff] {
                damaged[i] ^= flip;
                if let Some(len) = header_len(&damaged) {
                    assert!(len <= damaged.len());
                }
                damaged[i] ^= flip;
            }
        }
    }
}
