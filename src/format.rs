//! The content format a client follows: a number, or swupd's `staging` (the format of
//! content not yet released, published under `version/formatstaging/`).

use std::fmt;
use std::str::FromStr;

/// A content format as swupd names it in `-F`, its `format` file and its URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A released format, a positive number.
    Number(u32),
    /// `staging`: what a build server publishes before it picks a format number.
    Staging,
}

impl From<u32> for Format {
    fn from(n: u32) -> Format {
        Format::Number(n)
    }
}

impl FromStr for Format {
    type Err = String;

    /// As swupd's `set_format_string`: `staging` or a positive decimal number.
    fn from_str(s: &str) -> Result<Format, String> {
        if s == "staging" {
            return Ok(Format::Staging);
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(Format::Number(n)),
            _ => Err(format!(
                "invalid format {s:?}: a positive number or \"staging\""
            )),
        }
    }
}

impl fmt::Display for Format {
    /// The name in URLs: `version/format<this>/latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Format::Number(n) => write!(f, "{n}"),
            Format::Staging => f.write_str("staging"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Format {
    /// A TOML `format = 30` or `format = "staging"`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Format::Number(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_staging() {
        assert_eq!("30".parse(), Ok(Format::Number(30)));
        assert_eq!("staging".parse(), Ok(Format::Staging));
        for bad in ["0", "-1", "+3", "stage", "", "3x"] {
            assert!(bad.parse::<Format>().is_err(), "{bad}");
        }
        assert_eq!(Format::Staging.to_string(), "staging");
    }
}
