//! The key encoding: how an S3 object key becomes a storage path that every backend can hold
//! (a filesystem's 255-byte names and reserved characters included), and back.

/// Longest encoded path component [`encode_key`] produces, in bytes (marker included).
///
/// Why 250: Linux filesystems name at most 255 bytes per component (NAME_MAX), and the
/// filesystem backend stages every write as `<name>#<n>` beside its target, so a stored name
/// must leave room for `#` and a few digits. Every component that fitted before this limit
/// existed (at most 253 bytes with its staging suffix) keeps its old encoding unless it is one
/// of the rare 251 to 253 byte names.
pub const MAX_COMPONENT: usize = 250;

/// Reversible, backend-safe encoding of an S3 object key as a storage path below some prefix.
///
/// The key is split at `/`; every segment but the last becomes `d<escaped>`, the last one
/// `f<escaped>`, where escaping keeps `[A-Za-z0-9._~-]` and percent-encodes every other byte.
/// So keys never collide with each other on a filesystem (`a` is the file `fa`, `a/b` the file
/// `fb` in the directory `da`), empty segments and `..` are harmless, and listing a key prefix
/// only has to walk the directory of the prefix.
///
/// A segment whose encoded component would exceed [`MAX_COMPONENT`] bytes (S3 allows 1,024
/// byte keys, a filesystem 255 byte names) is cut into pieces at escape boundaries: every
/// piece but the last becomes a directory `c<escaped piece>`, and the last piece carries the
/// segment's `d` or `f`. `c` pieces are glued back without a `/` when decoding, so the stored
/// path still spells the whole key and listings return it exactly. The cut is deterministic
/// (each piece as long as fits), so one key has one path. The encoded key never contains `#`
/// (escaped as `%23`), which is what tells a backend's staging files apart from objects.
pub fn encode_key(key: &str) -> String {
    let segments: Vec<&str> = key.split('/').collect();
    let last = segments.len() - 1;
    let mut out = String::with_capacity(key.len() + segments.len() * 2);
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode_segment(segment, if i == last { 'f' } else { 'd' }, &mut out);
    }
    out
}

/// The directory path (encoded) that contains every key starting with `prefix`.
pub fn encode_prefix_dir(prefix: &str) -> String {
    match prefix.rfind('/') {
        None => String::new(),
        Some(i) => {
            let mut out = String::new();
            for (n, segment) in prefix[..i].split('/').enumerate() {
                if n > 0 {
                    out.push('/');
                }
                encode_segment(segment, 'd', &mut out);
            }
            out
        }
    }
}

/// Appends one key segment as `marker<escaped>`, preceded by `c<piece>/` directories when the
/// escaped segment is longer than a component may be.
fn encode_segment(segment: &str, marker: char, out: &mut String) {
    let mut piece = String::new();
    let mut token = String::with_capacity(3);
    for b in segment.bytes() {
        token.clear();
        escape_byte(b, &mut token);
        // One byte of every component is the marker.
        if 1 + piece.len() + token.len() > MAX_COMPONENT {
            out.push('c');
            out.push_str(&piece);
            out.push('/');
            piece.clear();
        }
        piece.push_str(&token);
    }
    out.push(marker);
    out.push_str(&piece);
}

/// Appends one byte as the key encoding (and SigV4's query encoding) writes it.
pub(crate) fn escape_byte(b: u8, out: &mut String) {
    if is_unreserved(b) {
        out.push(char::from(b));
    } else {
        out.push_str(&format!("%{b:02X}"));
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
}

/// What a stored path component is, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `d<segment>`: a directory, a whole segment followed by `/`.
    Dir,
    /// `c<piece>`: a directory, a piece of a long segment glued to what follows.
    Piece,
    /// `f<segment>`: a file, the key's last segment.
    File,
}

/// One stored path component: its marker and the key bytes it spells (without the `/` a
/// [`Marker::Dir`] adds); `None` for anything encode_key never writes, such as a backend's
/// staging file (`#`) or a bad escape. The bytes may end inside a UTF-8 character: a long
/// segment is cut at escape boundaries, not character boundaries.
pub(crate) fn decode_component(component: &str) -> Option<(Marker, Vec<u8>)> {
    let (&marker, mut rest) = component.as_bytes().split_first()?;
    let marker = match marker {
        b'd' => Marker::Dir,
        b'c' => Marker::Piece,
        b'f' => Marker::File,
        _ => return None,
    };
    let mut out = Vec::with_capacity(rest.len());
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            rest = &tail[2..];
        } else if is_unreserved(b) {
            out.push(b);
            rest = tail;
        } else {
            // Not produced by encode_key (e.g. a backend's staging file): not an object.
            return None;
        }
    }
    // A piece of a long segment is never empty (encode_key only cuts before a byte that does
    // not fit).
    if marker == Marker::Piece && out.is_empty() {
        return None;
    }
    Some((marker, out))
}

/// Inverse of [`encode_key`]; `None` for anything that is not an encoded key.
pub fn decode_key(encoded: &str) -> Option<String> {
    let components: Vec<&str> = encoded.split('/').collect();
    let last = components.len() - 1;
    let mut out = Vec::with_capacity(encoded.len());
    for (i, component) in components.iter().enumerate() {
        let (marker, bytes) = decode_component(component)?;
        // Pieces and directories are glued to the next component, so never the last one; the
        // file is the last one.
        if (marker == Marker::File) != (i == last) {
            return None;
        }
        out.extend_from_slice(&bytes);
        if marker == Marker::Dir {
            out.push(b'/');
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
/// Keys whose encodings cut segments into pieces, around the cut (for tests here and in
/// the backends).
pub(crate) fn long_keys() -> Vec<String> {
    vec![
        "a".repeat(1024),
        "é".repeat(300),
        "x/".repeat(511) + "y",
        format!("{}/{}", "é".repeat(100), "%".repeat(400)),
        format!("{}/tail", "b".repeat(600)),
        // Exactly at the limit, one over, and an escape straddling the cut.
        "m".repeat(MAX_COMPONENT - 1),
        "m".repeat(MAX_COMPONENT),
        format!("{}é", "m".repeat(MAX_COMPONENT - 3)),
    ]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests
    use super::*;
    use object_store::path::Path;

    #[test]
    fn key_encoding_round_trips_awkward_keys() {
        for key in [
            "a",
            "a/b",
            "a//b",
            "dir/",
            "../x",
            ".",
            "ü ber/%41#?",
            "/lead",
        ] {
            let enc = encode_key(key);
            assert!(Path::parse(&enc).is_ok(), "{enc}");
            assert_eq!(decode_key(&enc).as_deref(), Some(key));
        }
        assert_ne!(
            encode_key("a"),
            encode_key("a/b").split('/').next().unwrap()
        );
    }

    #[test]
    fn long_segments_are_cut_into_components_that_fit_name_max_and_round_trip() {
        for key in long_keys() {
            let enc = encode_key(&key);
            assert!(Path::parse(&enc).is_ok(), "{enc}");
            for component in enc.split('/') {
                assert!(component.len() <= MAX_COMPONENT, "{}", component.len());
                assert!(!component.contains('#'));
            }
            assert_eq!(decode_key(&enc).as_deref(), Some(key.as_str()));
        }
        // Short segments keep the encoding objects were stored under before.
        assert_eq!(encode_key("a/b"), "da/fb");
        assert_eq!(
            encode_key(&"m".repeat(MAX_COMPONENT - 1)),
            format!("f{}", "m".repeat(MAX_COMPONENT - 1))
        );
    }

    #[test]
    fn decoding_rejects_paths_encode_key_never_writes() {
        for bad in [
            "ca", "ca/", "c/fb", "fa/fb", "da", "fa#1", "f%zz", "f%+1", "",
        ] {
            assert_eq!(decode_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn prefix_dir_of_a_long_segment_contains_its_keys() {
        let long = "q".repeat(700);
        let key = format!("{long}/inner/x");
        let dir = encode_prefix_dir(&format!("{long}/in"));
        assert!(encode_key(&key).starts_with(&format!("{dir}/")), "{dir}");
    }

    #[test]
    fn prefix_dir_contains_prefixed_keys() {
        assert_eq!(encode_prefix_dir("abc"), "");
        assert_eq!(encode_prefix_dir("a/b/c"), "da/db");
        assert!(encode_key("a/b/cde").starts_with(&encode_prefix_dir("a/b/c")));
    }
}
