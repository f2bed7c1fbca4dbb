//! The one JSON validator every ingested body passes, whatever the flow's settings.
//! Pure and iterative (no recursion, so no stack to exhaust).
//!
//! It accepts exactly what serde_json, Python's `json` and JavaScript's `JSON.parse`
//! all read back the same way: RFC 8259 JSON whose objects and arrays nest at most
//! `JSON_DEPTH_MAX` (100) deep together, whose strings hold no lone surrogate (`"\udc00"`),
//! and whose numbers are at most `JSON_NUMBER_CHARS_MAX` characters and finite as a
//! double (`1e400` is refused: serde_json cannot read it, and JavaScript makes it
//! `Infinity`). Python refuses integers over 4,300 digits by default, so the number
//! bound sits far below that.

use crate::http::limits::{JSON_DEPTH_MAX, JSON_NUMBER_CHARS_MAX};

/// Why a body is not acceptable JSON, and the byte where that was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct JsonError {
    pub what: &'static str,
    pub at: usize,
}

fn err(what: &'static str, at: usize) -> JsonError {
    JsonError { what, at }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn hex4(b: &[u8], i: usize) -> Result<u32, JsonError> {
    let h = b.get(i..i + 4).ok_or(err("a \\u escape is cut short", i))?;
    let s = std::str::from_utf8(h).map_err(|_| err("a bad \\u escape", i))?;
    u32::from_str_radix(s, 16).map_err(|_| err("a bad \\u escape", i))
}

/// A string starting at `i` (the opening quote); returns the index after it.
fn string(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    i += 1;
    loop {
        let c = *b.get(i).ok_or(err("an unterminated string", i))?;
        match c {
            b'"' => return Ok(i + 1),
            0x00..=0x1f => return Err(err("a raw control character in a string", i)),
            b'\\' => {
                let e = *b.get(i + 1).ok_or(err("an unterminated string", i))?;
                match e {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let u = hex4(b, i + 2)?;
                        i += 6;
                        if (0xdc00..=0xdfff).contains(&u) {
                            return Err(err("a lone low surrogate", i - 6));
                        }
                        if (0xd800..=0xdbff).contains(&u) {
                            let low = (b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u'))
                                .then(|| hex4(b, i + 2))
                                .transpose()?;
                            match low {
                                Some(l) if (0xdc00..=0xdfff).contains(&l) => i += 6,
                                _ => return Err(err("a lone high surrogate", i - 6)),
                            }
                        }
                    }
                    _ => return Err(err("a bad escape", i)),
                }
            }
            _ => i += 1,
        }
    }
}

/// A number starting at `i`; returns the index after it.
fn number(b: &[u8], start: usize) -> Result<usize, JsonError> {
    let mut i = start;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - s
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return Err(err("a bad number", i)),
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return Err(err("a bad number", i));
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return Err(err("a bad number", i));
        }
    }
    if i - start > JSON_NUMBER_CHARS_MAX {
        return Err(err("a number longer than 100 characters", start));
    }
    // Bounded above, so this parse is cheap; the text is ASCII by construction.
    let text = std::str::from_utf8(&b[start..i]).map_err(|_| err("a bad number", start))?;
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(i),
        _ => Err(err("a number out of the range of a double", start)),
    }
}

fn literal(b: &[u8], i: usize) -> Result<usize, JsonError> {
    for word in [&b"true"[..], b"false", b"null"] {
        if b.get(i..i + word.len()) == Some(word) {
            return Ok(i + word.len());
        }
    }
    Err(err("an unexpected character", i))
}

/// Checks that `b` is one acceptable JSON document (whitespace around it allowed).
pub fn check(b: &[u8]) -> Result<(), JsonError> {
    // The open containers: true for an object, false for an array.
    let mut stack: Vec<bool> = Vec::new();
    let mut i = skip_ws(b, 0);
    // Expecting a value (else: a comma or a closing bracket).
    let mut want_value = true;
    loop {
        i = skip_ws(b, i);
        if want_value {
            let c = *b
                .get(i)
                .ok_or(err("the document ends where a value was due", i))?;
            match c {
                b'{' | b'[' => {
                    if stack.len() >= JSON_DEPTH_MAX {
                        return Err(err("nesting deeper than 100", i));
                    }
                    let object = c == b'{';
                    stack.push(object);
                    i = skip_ws(b, i + 1);
                    let close = if object { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        stack.pop();
                        i += 1;
                        want_value = false;
                        if stack.is_empty() {
                            break;
                        }
                        continue;
                    }
                    if object {
                        i = member_key(b, i)?;
                    }
                    continue;
                }
                b'"' => i = string(b, i)?,
                b'-' | b'0'..=b'9' => i = number(b, i)?,
                _ => i = literal(b, i)?,
            }
            want_value = false;
            if stack.is_empty() {
                break;
            }
            continue;
        }
        let Some(&object) = stack.last() else { break };
        match b.get(i) {
            Some(b',') => {
                i = skip_ws(b, i + 1);
                if object {
                    i = member_key(b, i)?;
                }
                want_value = true;
            }
            Some(b'}') if object => {
                stack.pop();
                i += 1;
                if stack.is_empty() {
                    break;
                }
            }
            Some(b']') if !object => {
                stack.pop();
                i += 1;
                if stack.is_empty() {
                    break;
                }
            }
            _ => return Err(err("a comma or a closing bracket was due", i)),
        }
    }
    let end = skip_ws(b, i);
    if end != b.len() {
        return Err(err("trailing characters after the document", end));
    }
    Ok(())
}

/// `"key" :` at `i`; returns the index after the colon.
fn member_key(b: &[u8], i: usize) -> Result<usize, JsonError> {
    if b.get(i) != Some(&b'"') {
        return Err(err("an object key was due", i));
    }
    let i = skip_ws(b, string(b, i)?);
    if b.get(i) != Some(&b':') {
        return Err(err("a colon was due", i));
    }
    Ok(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_every_reader_reads_back() {
        for ok in [
            "{}",
            "[]",
            " {\"a\": [1, 2.5, -0.1e-3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"]} ",
            "\"just a string\"",
            "0",
            "{\"n\": 12345678901234567890}",
            "{\r\n  \"pretty\": {\r \"a\": []\n }\n}",
        ] {
            assert_eq!(check(ok.as_bytes()), Ok(()), "{ok}");
            assert!(
                serde_json::from_str::<serde_json::Value>(ok).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn refuses_what_some_reader_would_not() {
        let deep_obj = "{\"a\":".repeat(101) + "1" + &"}".repeat(101);
        let deep_arr = "[".repeat(101) + &"]".repeat(101);
        let at_limit = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(check(at_limit.as_bytes()), Ok(()));
        let long = "1".repeat(101);
        for bad in [
            deep_obj.as_str(),
            deep_arr.as_str(),
            "\"\\udc00\"",
            "\"\\ud800\"",
            "\"\\ud800x\"",
            "1e400",
            "-1e400",
            long.as_str(),
            "{\"a\":1,}",
            "[1,]",
            "{\"a\" 1}",
            "01",
            "1.",
            "\"raw\ttab\"",
            "{} {}",
            "nul",
            "",
            "{\"a\":",
        ] {
            assert!(check(bad.as_bytes()).is_err(), "{bad:?} passed");
        }
    }
}
