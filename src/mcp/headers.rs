//! The stateless revision's header values: a value that is not plain visible ASCII (or that is
//! empty, padded with spaces, or looks like a sentinel itself) travels as
//! `=?base64?<Base64 of its UTF-8>?=`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::borrow::Cow;

const OPEN: &str = "=?base64?";
const CLOSE: &str = "?=";

/// The header form of `value`.
pub fn encode(value: &str) -> Cow<'_, str> {
    let sentinel = value.starts_with(OPEN) && value.ends_with(CLOSE);
    let padded = value.starts_with(' ') || value.ends_with(' ');
    let visible = value.bytes().all(|b| (0x20..0x7f).contains(&b));
    let plain = !value.is_empty() && visible && !padded && !sentinel;
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("{OPEN}{}{CLOSE}", STANDARD.encode(value)))
    }
}

/// The value a header carries: itself, or the UTF-8 text of its sentinel (`None` when the
/// sentinel is malformed).
pub fn decode(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix(OPEN).and_then(|v| v.strip_suffix(CLOSE)) else {
        return Some(value.to_string());
    };
    String::from_utf8(STANDARD.decode(inner).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_malformed_sentinels_are_refused() {
        for v in ["plain", "éve", " padded ", "", "=?base64?x?="] {
            assert_eq!(decode(&encode(v)).as_deref(), Some(v), "{v:?}");
        }
        assert_eq!(encode("plain"), "plain");
        assert_eq!(encode("éve"), "=?base64?w6l2ZQ==?=");
        assert_eq!(decode("=?base64?not base64?="), None);
        assert_eq!(decode("=?base64?//8=?="), None, "not UTF-8");
    }
}
