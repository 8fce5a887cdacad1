//! Typed reading of TOML values with errors that name the key and its line.
//!
//! Every key is read as a spanned `toml::Value` and converted here, so one message format
//! covers every mistake: `FILE:LINE: KEY: what is wrong; what to write instead`.

use std::time::Duration;

use toml::Spanned;

use super::ConfigError;

/// Where a value came from, for error messages.
pub(crate) struct Origin<'a> {
    pub path: &'a std::path::Path,
    pub text: &'a str,
}

impl Origin<'_> {
    /// 1-based line of a byte offset in the file.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub fn invalid(&self, offset: Option<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line: offset.map(|o| self.line(o)),
            key: key.to_string(),
            message,
        }
    }

    fn wrong(&self, value: &Spanned<toml::Value>, key: &str, expected: &str) -> ConfigError {
        self.invalid(
            Some(value.span().start),
            key,
            format!("expected {expected}, found {}", describe(value.get_ref())),
        )
    }

    pub fn string(&self, value: &Spanned<toml::Value>, key: &str) -> Result<String, ConfigError> {
        match value.get_ref() {
            toml::Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            toml::Value::String(_) => {
                Err(self.invalid(Some(value.span().start), key, "must not be empty".into()))
            }
            _ => Err(self.wrong(value, key, "a string")),
        }
    }

    pub fn boolean(&self, value: &Spanned<toml::Value>, key: &str) -> Result<bool, ConfigError> {
        match value.get_ref() {
            toml::Value::Boolean(b) => Ok(*b),
            _ => Err(self.wrong(value, key, "true or false")),
        }
    }

    /// An integer within `range` (inclusive).
    pub fn integer(
        &self,
        value: &Spanned<toml::Value>,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        match value.get_ref() {
            toml::Value::Integer(n) if range.contains(n) => Ok(*n),
            toml::Value::Integer(n) => Err(self.invalid(
                Some(value.span().start),
                key,
                format!("{n} is out of range: expected {expected}"),
            )),
            _ => Err(self.wrong(value, key, &expected)),
        }
    }

    /// One of `choices`, given as a string.
    pub fn choice<T: Copy>(
        &self,
        value: &Spanned<toml::Value>,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let expected = format!("one of \"{}\"", names.join("\", \""));
        match value.get_ref() {
            toml::Value::String(s) => choices
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(s.trim()))
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    self.invalid(
                        Some(value.span().start),
                        key,
                        format!("{s:?} is not valid: expected {expected}"),
                    )
                }),
            _ => Err(self.wrong(value, key, &expected)),
        }
    }

    /// A list of strings.
    pub fn strings(
        &self,
        value: &Spanned<toml::Value>,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        match value.get_ref() {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(self.invalid(
                        Some(value.span().start),
                        key,
                        format!("expected a list of strings, found {}", describe(other)),
                    )),
                })
                .collect(),
            toml::Value::String(s) => Ok(vec![s.clone()]),
            _ => Err(self.wrong(value, key, "a list of strings")),
        }
    }

    /// A duration: seconds as an integer, or a string like `"90s"`, `"5m"`, `"2h"`, `"1d"`.
    pub fn duration(
        &self,
        value: &Spanned<toml::Value>,
        key: &str,
    ) -> Result<Duration, ConfigError> {
        let expected = "seconds (an integer) or a string like \"30s\", \"5m\", \"1h\"";
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Some(Duration::from_secs(*n as u64)),
            toml::Value::String(s) => parse_duration(s),
            _ => None,
        };
        match parsed {
            Some(d) if !d.is_zero() => Ok(d),
            _ => Err(self.wrong(value, key, expected)),
        }
    }

    /// A byte size: an integer, or a string like `"8 MiB"`, `"512k"`, `"1G"` (binary units).
    pub fn size(&self, value: &Spanned<toml::Value>, key: &str) -> Result<u64, ConfigError> {
        let expected = "bytes (an integer) or a string like \"512 KiB\", \"8 MiB\", \"1 GiB\"";
        let parsed = match value.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Some(*n as u64),
            toml::Value::String(s) => parse_size(s),
            _ => None,
        };
        match parsed {
            Some(n) if n > 0 => Ok(n),
            _ => Err(self.wrong(value, key, expected)),
        }
    }
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(n) => format!("the integer {n}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "a list".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Parses `"90"`, `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"1w"` (one number and one unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(factor)?))
}

/// Parses `"4096"`, `"512k"`, `"512 KiB"`, `"8M"`, `"8 MiB"`, `"1G"`; units are binary.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration(" 2 hours "), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 fortnights"), None);
        assert_eq!(parse_size("8 MiB"), Some(8 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1.5M"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
    }
}
