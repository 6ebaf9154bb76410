//! One page of a bucket listing: marker handling, delimiter grouping, `max-keys`, and the
//! `encoding-type=url` encoding. Pure (no I/O), shared by ListObjects (v1) and ListObjectsV2,
//! which differ only in how the resume point travels (marker versus continuation token).

use super::error::ProxyError;

/// S3's default and largest page.
pub const MAX_KEYS: usize = 1000;

/// What to list: every key starting with `prefix` and sorting after `after`.
#[derive(Debug)]
pub struct PageRequest<'a> {
    /// Only keys starting with this are listed.
    pub prefix: &'a str,
    /// Empty delimiters are ignored, as S3 does.
    pub delimiter: Option<&'a str>,
    /// Keys and common prefixes up to and including this one are skipped (v1 `marker`, v2
    /// `start-after` or the decoded continuation token).
    pub after: Option<&'a str>,
    /// Most objects plus common prefixes on the page.
    pub max_keys: usize,
}

/// One page: objects and common prefixes in key order, counted together against `max_keys`.
#[derive(Debug)]
pub struct Page<T> {
    /// The listed keys with what the caller attached to them.
    pub contents: Vec<(String, T)>,
    /// Groups of keys folded at the delimiter, each ending in it.
    pub common_prefixes: Vec<String>,
    /// More keys follow this page.
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page resumes.
    pub last: Option<String>,
}

/// Builds one page from `keys`, which must be sorted by key and already limited to `prefix`.
pub fn page<T>(keys: Vec<(String, T)>, req: &PageRequest<'_>) -> Page<T> {
    let delimiter = req.delimiter.filter(|d| !d.is_empty());
    let after = req.after;
    let mut contents = Vec::new();
    let mut common: Vec<String> = Vec::new();
    let mut last = None;
    let mut truncated = false;
    for (key, value) in keys {
        if after.is_some_and(|a| key.as_str() <= a) {
            continue;
        }
        let group = delimiter.and_then(|d| {
            key.get(req.prefix.len()..)
                .and_then(|rest| rest.find(d))
                .map(|i| key[..req.prefix.len() + i + d.len()].to_owned())
        });
        if let Some(group) = group {
            // A group already returned (on this page, or as the resume point) is not repeated.
            if common.last() == Some(&group) || after.is_some_and(|a| group.as_str() <= a) {
                continue;
            }
            if contents.len() + common.len() >= req.max_keys {
                truncated = true;
                break;
            }
            last = Some(group.clone());
            common.push(group);
            continue;
        }
        if contents.len() + common.len() >= req.max_keys {
            truncated = true;
            break;
        }
        last = Some(key.clone());
        contents.push((key, value));
    }
    Page {
        contents,
        common_prefixes: common,
        truncated,
        last,
    }
}

/// `max-keys` as S3 reads it: absent means 1000, and larger values are capped at 1000.
pub fn max_keys(requested: Option<i32>) -> usize {
    requested.map_or(MAX_KEYS, |n| {
        usize::try_from(n.clamp(0, MAX_KEYS as i32)).unwrap_or(MAX_KEYS)
    })
}

/// Whether names in the response are URL-encoded. S3 knows one encoding, `url`; anything else
/// is a 400, as on S3.
pub fn url_encoding(encoding_type: Option<&str>) -> Result<bool, ProxyError> {
    match encoding_type {
        None => Ok(false),
        Some(t) if t.eq_ignore_ascii_case("url") => Ok(true),
        Some(_) => Err(ProxyError::InvalidArgument(
            "invalid encoding-type: the only supported value is url".into(),
        )),
    }
}

/// Encodes a key or prefix for `encoding-type=url`: every byte except the unreserved ones and
/// `/` becomes `%XX`.
///
/// Why it matters: the AWS SDKs (botocore among them) ask for `encoding-type=url` on their own
/// and then URL-decode every key, with `+` read as a space. A server that echoes the encoding
/// type but sends raw names turns a key `a+b` into `a b`, and `100%25` into `100%`, in the
/// client's listing. Encoding `+` and `%` as well keeps every decoder exact.
pub fn url_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Applies [`url_encode`] when `encode` is set.
pub fn encode_if(encode: bool, name: String) -> String {
    if encode { url_encode(&name) } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<(String, ())> {
        names.iter().map(|k| ((*k).to_owned(), ())).collect()
    }

    fn req<'a>(
        prefix: &'a str,
        delimiter: Option<&'a str>,
        after: Option<&'a str>,
        max: usize,
    ) -> PageRequest<'a> {
        PageRequest {
            prefix,
            delimiter,
            after,
            max_keys: max,
        }
    }

    fn names<T>(p: &Page<T>) -> Vec<&str> {
        p.contents.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn paging_by_last_returned_visits_every_key_and_prefix_once() {
        let all = ["a/1", "a/2", "b", "c", "d/1", "d/2", "e"];
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let p = page(keys(&all), &req("", Some("/"), after.as_deref(), 2));
            pages += 1;
            seen.extend(names(&p).into_iter().map(str::to_owned));
            seen.extend(p.common_prefixes.iter().cloned());
            if !p.truncated {
                break;
            }
            after = p.last.clone();
        }
        seen.sort();
        assert_eq!(seen, ["a/", "b", "c", "d/", "e"]);
        assert_eq!(pages, 3);
    }

    #[test]
    fn delimiter_groups_below_the_prefix_only() {
        let p = page(
            keys(&["p/x", "p/y/1", "p/y/2", "p/z"]),
            &req("p/", Some("/"), None, 1000),
        );
        assert_eq!(names(&p), ["p/x", "p/z"]);
        assert_eq!(p.common_prefixes, ["p/y/"]);
        assert!(!p.truncated);
    }

    #[test]
    fn empty_delimiter_lists_flat() {
        let p = page(keys(&["a/1", "b"]), &req("", Some(""), None, 1000));
        assert_eq!(names(&p), ["a/1", "b"]);
        assert!(p.common_prefixes.is_empty());
    }

    #[test]
    fn max_keys_zero_returns_an_empty_truncated_page() {
        let p = page(keys(&["a"]), &req("", None, None, 0));
        assert!(p.contents.is_empty());
        assert!(p.truncated);
    }

    #[test]
    fn max_keys_defaults_to_1000_and_is_capped() {
        assert_eq!(max_keys(None), 1000);
        assert_eq!(max_keys(Some(5000)), 1000);
        assert_eq!(max_keys(Some(-3)), 0);
        assert_eq!(max_keys(Some(7)), 7);
    }

    #[test]
    fn url_encoding_keeps_plus_percent_and_space_distinct() {
        assert_eq!(url_encode("a+b c%d/é"), "a%2Bb%20c%25d/%C3%A9");
        assert_eq!(url_encode("plain/key-1_2.3~"), "plain/key-1_2.3~");
    }

    #[test]
    fn only_the_url_encoding_type_is_accepted() {
        assert!(!url_encoding(None).unwrap());
        assert!(url_encoding(Some("url")).unwrap());
        assert!(matches!(
            url_encoding(Some("base64")),
            Err(ProxyError::InvalidArgument(_))
        ));
    }
}
