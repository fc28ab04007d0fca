//! Strings for the parsers, from fuzzer bytes: mostly a value from a pool of valid and nearly
//! valid spellings, edited or not, sometimes raw bytes. A raw string alone almost never
//! parses; an edited pool value stands next to the boundary the rules draw.

use arbitrary::{Arbitrary, Result, Unstructured};

/// The longest string a target builds. Past every limit the rules set (512 for a scope or a
/// redirect URI), so the length checks are reached, and small enough to keep inputs cheap.
pub const MAX_TEXT: usize = 1_100;

/// Characters that matter to some rule: separators, the pattern star, what URLs treat
/// specially, a NUL, a non-ASCII letter, a digit.
const SPECIAL: &[char] = &[
    ' ', ':', '*', '-', '_', '.', '+', '/', '?', '#', '@', '%', '~', '\0', '\t', 'é', '0', '9',
    'A', 'z', '[', ']',
];

/// A pool value (half the time), an edited pool value, or raw text.
pub fn text(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    match u.int_in_range(0u8..=7)? {
        0..=3 => Ok((*u.choose(pool)?).to_owned()),
        4..=6 => {
            let base = (*u.choose(pool)?).to_owned();
            edit(u, base)
        }
        _ => raw(u),
    }
}

/// `text`, or absent.
pub fn maybe_text(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<Option<String>> {
    if u.ratio(1u8, 4)? {
        Ok(None)
    } else {
        text(u, pool).map(Some)
    }
}

/// Any UTF-8 the fuzzer makes, at most [`MAX_TEXT`] bytes.
pub fn raw(u: &mut Unstructured<'_>) -> Result<String> {
    let s = <&str>::arbitrary(u)?;
    Ok(truncate(s, MAX_TEXT).to_owned())
}

/// One to three edits: insert, remove or replace a character, cut the string, or repeat it
/// (to cross a length limit).
pub fn edit(u: &mut Unstructured<'_>, mut s: String) -> Result<String> {
    for _ in 0..u.int_in_range(1u8..=3)? {
        let cuts: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
        let at = *u.choose(&cuts)?;
        match u.int_in_range(0u8..=4)? {
            0 => s.insert(at, character(u)?),
            1 if at < s.len() => {
                s.remove(at);
            }
            2 if at < s.len() => {
                s.remove(at);
                s.insert(at, character(u)?);
            }
            3 => s.truncate(at),
            _ => {
                let times = u.int_in_range(2usize..=20)?;
                s = s.repeat(times);
            }
        }
        s = truncate(&s, MAX_TEXT).to_owned();
    }
    Ok(s)
}

fn character(u: &mut Unstructured<'_>) -> Result<char> {
    if u.ratio(3u8, 4)? {
        Ok(*u.choose(SPECIAL)?)
    } else {
        char::arbitrary(u)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A count from 0 to `max`, for lists.
pub fn count(u: &mut Unstructured<'_>, max: usize) -> Result<usize> {
    u.int_in_range(0..=max)
}
