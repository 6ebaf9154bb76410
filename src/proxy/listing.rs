//! One page of a bucket listing: marker handling, delimiter grouping, `max-keys`, and the
//! `encoding-type=url` encoding. Pure (no I/O), shared by ListObjects (v1) and ListObjectsV2,
//! which differ only in how the resume point travels (marker versus continuation token).

use std::collections::BTreeMap;

use futures::{Stream, StreamExt};

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

/// Builds one page from `keys` in any order (keys outside `prefix` are skipped).
pub fn page<T>(keys: impl IntoIterator<Item = (String, T)>, req: &PageRequest<'_>) -> Page<T> {
    let mut builder = PageBuilder::new(req);
    for (key, value) in keys {
        builder.push(key, value);
    }
    builder.finish()
}

/// Builds one page from a stream of keys, stopping as soon as keys that come in key order
/// (`ordered`) can no longer change it; keys in any order are read to the end.
///
/// # Errors
/// The stream's first error.
pub async fn page_from_stream<T, E>(
    mut keys: impl Stream<Item = Result<(String, T), E>> + Unpin,
    ordered: bool,
    req: &PageRequest<'_>,
) -> Result<Page<T>, E> {
    let mut builder = PageBuilder::new(req).in_key_order(ordered);
    while let Some(item) = keys.next().await {
        let (key, value) = item?;
        builder.push(key, value);
        if builder.is_complete() {
            break;
        }
    }
    Ok(builder.finish())
}

/// Builds one page from keys streamed in any order, holding at most `max_keys + 1` entries.
///
/// Why not sort and cut: the storage paths of most backends are not in key order (the key
/// encoding escapes bytes, and S3 lists in stored-path order), so a page has to look at every
/// key below the prefix's directory. It need not keep them: only the `max_keys` smallest
/// entries after the resume point can be on the page, plus one more to know the page is
/// truncated, so a listing of a million keys costs a page's worth of memory, not a million
/// entries. Keys that do come in key order (the filesystem's listing) end the page early:
/// see [`PageBuilder::is_complete`].
#[derive(Debug)]
pub struct PageBuilder<'a, T> {
    req: &'a PageRequest<'a>,
    delimiter: Option<&'a str>,
    /// The smallest entries after the resume point: objects (`Some`) and common prefixes
    /// (`None`). A key and a common prefix never collide: below the prefix, a common prefix
    /// ends in the delimiter, and a key that contains the delimiter there is folded into one.
    entries: BTreeMap<String, Option<T>>,
    /// `max_keys + 1`.
    capacity: usize,
    /// Keys are pushed in increasing order.
    ordered: bool,
}

impl<'a, T> PageBuilder<'a, T> {
    /// An empty page for `req`.
    pub fn new(req: &'a PageRequest<'a>) -> Self {
        Self {
            req,
            delimiter: req.delimiter.filter(|d| !d.is_empty()),
            entries: BTreeMap::new(),
            capacity: req.max_keys.saturating_add(1),
            ordered: false,
        }
    }

    /// Declares whether the keys will be pushed in increasing byte order (as an ordered
    /// storage listing yields them), so that [`PageBuilder::is_complete`] can end the page.
    pub fn in_key_order(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Whether no key still to come can change the page: the keys come in key order and the
    /// page holds `max_keys + 1` entries.
    ///
    /// Why that is enough: with keys in order, a new entry is never smaller than one held. A
    /// key is larger than every earlier key. Its common prefix `g` could sort before a held
    /// entry only if that entry lay between `g` and the key, so started with `g`: it would
    /// have been folded into `g` itself. So once full, every further entry would be dropped as
    /// the largest.
    pub fn is_complete(&self) -> bool {
        self.ordered && self.entries.len() >= self.capacity
    }

    /// Offers one key with its value.
    pub fn push(&mut self, key: String, value: T) {
        let after = self.req.after;
        let Some(rest) = key.strip_prefix(self.req.prefix) else {
            return;
        };
        if after.is_some_and(|a| key.as_str() <= a) {
            return;
        }
        let group = self.delimiter.and_then(|d| {
            rest.find(d)
                .map(|i| key[..self.req.prefix.len() + i + d.len()].to_owned())
        });
        let (name, value) = match group {
            // A group already returned (as the resume point or before it) is not repeated.
            Some(group) if after.is_some_and(|a| group.as_str() <= a) => return,
            Some(group) => (group, None),
            None => (key, Some(value)),
        };
        if self.entries.len() >= self.capacity
            && self
                .entries
                .last_key_value()
                .is_some_and(|(largest, _)| name >= *largest)
        {
            return;
        }
        // A group seen before keeps its entry.
        self.entries.entry(name).or_insert(value);
        if self.entries.len() > self.capacity {
            self.entries.pop_last();
        }
    }

    /// The page: the first `max_keys` entries in key order. A page of `max-keys=0` is empty
    /// and not truncated, as S3 answers it (a truncated page without a resume point would
    /// send a paginating client round for ever).
    pub fn finish(self) -> Page<T> {
        let truncated = self.req.max_keys > 0 && self.entries.len() > self.req.max_keys;
        let mut contents = Vec::new();
        let mut common_prefixes = Vec::new();
        let mut last = None;
        for (name, value) in self.entries.into_iter().take(self.req.max_keys) {
            last = Some(name.clone());
            match value {
                Some(value) => contents.push((name, value)),
                None => common_prefixes.push(name),
            }
        }
        Page {
            contents,
            common_prefixes,
            truncated,
            last,
        }
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
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use crate::storage::{Storage, StorageConfig, encode_key};

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

    /// Pages through `all` (in storage order) the way a client does and returns what it saw.
    fn walk(all: &[String], prefix: &str, delimiter: Option<&str>, max: usize) -> Vec<String> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let p = page(
                all.iter().map(|k| (k.clone(), ())).collect::<Vec<_>>(),
                &req(prefix, delimiter, after.as_deref(), max),
            );
            assert!(p.contents.len() + p.common_prefixes.len() <= max);
            // Objects and prefixes interleave in key order on the page.
            let mut on_page: Vec<String> = names(&p).into_iter().map(str::to_owned).collect();
            on_page.extend(p.common_prefixes.iter().cloned());
            on_page.sort();
            seen.extend(on_page);
            if !p.truncated {
                return seen;
            }
            after = p.last.clone();
        }
    }

    #[test]
    fn unsorted_keys_page_in_key_order_with_and_without_a_delimiter() {
        // 2,500 keys in a scrambled (storage-like) order, some grouped by a delimiter.
        let mut all: Vec<String> = (0..2500)
            .map(|i| match i % 5 {
                0 => format!("g{}/k{i:05}", i % 7),
                _ => format!("k{i:05}"),
            })
            .collect();
        all.sort_by_key(|k| {
            k.bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        });
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(walk(&all, "", None, 1000), sorted);
        let mut grouped: Vec<String> = sorted
            .iter()
            .filter(|k| !k.contains('/'))
            .cloned()
            .collect();
        grouped.extend((0..7).map(|g| format!("g{g}/")));
        grouped.sort();
        assert_eq!(walk(&all, "", Some("/"), 1000), grouped);
        assert_eq!(walk(&all, "", Some("/"), 3), grouped);
        let g3: Vec<String> = sorted
            .iter()
            .filter(|k| k.starts_with("g3/"))
            .cloned()
            .collect();
        assert_eq!(walk(&all, "g3/", Some("/"), 7), g3);
    }

    #[test]
    fn a_page_builder_holds_at_most_max_keys_plus_one_entries() {
        let r = req("", Some("/"), Some("k00100"), 10);
        let mut builder = PageBuilder::new(&r);
        // Descending, the worst order: every key displaces the largest one held.
        for i in (0..10_000).rev() {
            builder.push(format!("k{i:05}"), i);
            builder.push(format!("g{}/x{i}", i % 50), i);
            assert!(builder.entries.len() <= 11);
        }
        let p = builder.finish();
        assert_eq!(
            names(&p),
            (101..111).map(|i| format!("k{i:05}")).collect::<Vec<_>>()
        );
        assert!(
            p.common_prefixes.is_empty(),
            "groups sort before the marker"
        );
        assert!(p.truncated);
        assert_eq!(p.last.as_deref(), Some("k00110"));
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
    fn max_keys_zero_returns_an_empty_page_that_is_not_truncated() {
        let p = page(keys(&["a"]), &req("", None, None, 0));
        assert!(p.contents.is_empty());
        assert!(!p.truncated);
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

    /// A filesystem (ordered) and a memory (unordered) backend holding `keys` below `t`.
    async fn both_backends(keys: &[String], dir: &tempfile::TempDir) -> [Storage; 2] {
        let fs = Storage::from_config(&StorageConfig::fs_for_tests(dir.path())).unwrap();
        let memory = Storage::memory();
        for storage in [&fs, &memory] {
            for key in keys {
                let path = format!("t/{}", encode_key(key));
                storage
                    .put(&path, bytes::Bytes::from(key.clone()))
                    .await
                    .unwrap();
            }
        }
        [fs, memory]
    }

    /// Every page a client walking the listing sees: (keys with sizes, prefixes, truncated).
    async fn pages(
        storage: &Storage,
        prefix: &str,
        delimiter: Option<&str>,
        max: usize,
    ) -> Vec<(Vec<(String, u64)>, Vec<String>, bool)> {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let r = req(prefix, delimiter, after.as_deref(), max);
            let found = storage.list_keys("t", prefix, delimiter, after.as_deref());
            let p = page_from_stream(found.keys, found.ordered, &r)
                .await
                .unwrap();
            let contents = p.contents.iter().map(|(k, m)| (k.clone(), m.size));
            seen.push((contents.collect(), p.common_prefixes.clone(), p.truncated));
            // max-keys 0: an empty truncated page with no resume point.
            if !p.truncated || p.last.is_none() {
                return seen;
            }
            after = p.last.clone();
        }
    }

    #[tokio::test]
    async fn ordered_filesystem_pages_equal_the_pages_of_an_unordered_listing() {
        let mut keys: Vec<String> = (0..300)
            .map(|i| match i % 6 {
                0 => format!("g{}/k{i:03}", i % 7),
                1 => format!("x/y/z{i}"),
                2 => format!("a+b {i}é"),
                _ => format!("k{i:03}"),
            })
            .collect();
        let long = "m".repeat(247);
        keys.extend([
            "é".repeat(300),
            format!("{long}b"),
            format!("{long}é/x"),
            format!("{long}é/y"),
            "g1/".to_owned(),
            "g1//z".to_owned(),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let [fs, memory] = both_backends(&keys, &dir).await;
        let table: &[(&str, Option<&str>, usize)] = &[
            ("", None, 1000),
            ("", None, 7),
            ("", Some("/"), 3),
            ("", Some("/"), 1),
            ("g1/", Some("/"), 2),
            ("g", Some("/"), 4),
            ("x/", Some("/"), 1),
            ("k", None, 50),
            ("", Some("é"), 5),
            ("", Some("k0"), 9),
            ("m", Some("/"), 1),
            ("", None, 0),
        ];
        for &(prefix, delimiter, max) in table {
            let expected = pages(&memory, prefix, delimiter, max).await;
            assert_eq!(
                pages(&fs, prefix, delimiter, max).await,
                expected,
                "{prefix:?} {delimiter:?} {max}"
            );
        }
    }

    #[tokio::test]
    async fn a_page_of_two_over_a_thousand_filesystem_objects_reads_far_fewer_names() {
        let keys: Vec<String> = (0..1000).map(|i| format!("d{}/k{i:04}", i / 100)).collect();
        let dir = tempfile::tempdir().unwrap();
        let [fs, _] = both_backends(&keys, &dir).await;
        let r = req("", None, None, 2);
        let found = fs.list_keys("t", "", None, None);
        assert!(found.ordered);
        let p = page_from_stream(found.keys, true, &r).await.unwrap();
        assert_eq!(names(&p), ["d0/k0000", "d0/k0001"]);
        assert!(p.truncated);
        // The root's ten names and the first directory's hundred.
        assert_eq!(fs.names_read(), 110);
    }
}
