//! Property tests of the fast path's parsers: any bytes, split anywhere,
//! read as in one piece; never a panic; never more body than framed; and
//! generated requests forwarded as httparse reads them.

use proptest::prelude::*;

use super::framing::{ChunkedDecoder, Consumed, Framing};
use super::head::{parse_request, HeadRules, Parsed};

const LIMITS: HeadRules = HeadRules {
    max_headers: 100,
    max_url: 8192,
    tls: false,
    trace: false,
};

/// A parse result in a comparable form.
fn summary(buf: &[u8]) -> String {
    let mut out = Vec::new();
    match parse_request(buf, LIMITS, b"10.0.0.1", None, || [b'f'; 32], &mut out) {
        Parsed::Partial => "partial".into(),
        Parsed::Fallback => "fallback".into(),
        Parsed::Malformed(why) => format!("malformed {why}"),
        Parsed::Refused(r) => format!("refused {}", r.code),
        Parsed::Complete(head) => format!(
            "complete {} {} {:?}",
            head.head_len,
            head.content_length,
            String::from_utf8_lossy(&out)
        ),
    }
}

/// Bytes that look like a request head more often than not.
fn head_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /x?y=1 HTTP/1.1\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: 5\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"Connection: close, x-a\r\n".to_vec()),
        Just(b"X-A: 1\r\n".to_vec()),
        Just(b"X-Request-Id: abc\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..12),
    ];
    proptest::collection::vec(line, 0..12).prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What the fast path does: parse the growing buffer after every read
    /// and act on the first answer that is not `Partial`. That answer is the
    /// one the whole buffer gives, however the bytes were split.
    #[test]
    fn a_head_split_anywhere_reads_as_in_one_piece(
        buf in prop_oneof![head_like(), proptest::collection::vec(any::<u8>(), 0..200)],
    ) {
        let whole = summary(&buf);
        let first = (0..=buf.len())
            .map(|k| summary(&buf[..k]))
            .find(|s| s != "partial")
            .unwrap_or_else(|| "partial".into());
        prop_assert_eq!(first, whole);
    }

    /// Generated requests are forwarded as httparse reads them: the same
    /// method and target, every end-to-end header kept in order, the
    /// forwarding headers added, the declared length taken.
    #[test]
    fn generated_requests_forward_what_httparse_reads(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        path in "/[a-z0-9/._-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        headers in proptest::collection::vec(("x-[a-z]{1,10}", "[!-~]([ !-~]{0,30}[!-~])?"), 0..10),
        length in proptest::option::of(0u64..100_000),
    ) {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: h\r\n");
        for (name, value) in &headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(n) = length {
            raw.push_str(&format!("Content-Length: {n}\r\n"));
        }
        raw.push_str("\r\n");
        let mut out = Vec::new();
        let parsed = parse_request(raw.as_bytes(), LIMITS, b"10.0.0.1", None, || [b'f'; 32], &mut out);
        let Parsed::Complete(head) = parsed else {
            return Err(TestCaseError::fail(format!("not complete: {raw:?}")));
        };
        prop_assert_eq!(head.head_len, raw.len());
        prop_assert_eq!(head.content_length, length.unwrap_or(0));

        let mut theirs = [httparse::EMPTY_HEADER; 32];
        let mut input = httparse::Request::new(&mut theirs);
        prop_assert!(input.parse(raw.as_bytes()).unwrap().is_complete());
        let mut fwd_headers = [httparse::EMPTY_HEADER; 32];
        let mut forwarded = httparse::Request::new(&mut fwd_headers);
        prop_assert!(forwarded.parse(&out).unwrap().is_complete());
        prop_assert_eq!(forwarded.method, input.method);
        prop_assert_eq!(forwarded.path, input.path);
        let kept: Vec<_> = forwarded
            .headers
            .iter()
            .filter(|h| !h.name.starts_with("x-forwarded") && h.name != "x-request-id")
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        let sent: Vec<_> = input
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        prop_assert_eq!(kept, sent);
        let xff = forwarded.headers.iter().find(|h| h.name == "x-forwarded-for").unwrap();
        prop_assert_eq!(xff.value, b"10.0.0.1");
    }

    /// A chunked body ends exactly where its encoding does, wherever it is
    /// split, and the bytes after it are never taken as body.
    #[test]
    fn a_chunked_body_ends_where_it_was_encoded_however_split(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..6),
        extension in proptest::option::of(";[a-z]{1,5}(=[a-z0-9]{1,5})?"),
        trailers in proptest::collection::vec("x-[a-z]{1,5}: [a-z0-9]{0,8}", 0..3),
        after in proptest::collection::vec(any::<u8>(), 0..50),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let ext = extension.unwrap_or_default();
        let mut body = Vec::new();
        for chunk in &chunks {
            body.extend_from_slice(format!("{:x}{ext}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        for t in &trailers {
            body.extend_from_slice(format!("{t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        let encoded = body.len();
        body.extend_from_slice(&after);
        prop_assert_eq!(feed(&body, &[]), Ok(Some(encoded)));
        prop_assert_eq!(feed(&body, &cuts), Ok(Some(encoded)));
    }

    /// Any bytes at all: no panic, the same verdict split or whole, and an
    /// end never past the bytes given.
    #[test]
    fn any_bytes_give_the_chunked_decoder_one_verdict(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(prop_oneof![
                Just(b'0'), Just(b'5'), Just(b'f'), Just(b'\r'), Just(b'\n'), Just(b';'), Just(b'a')
            ], 0..100),
        ],
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = feed(&bytes, &[]);
        prop_assert_eq!(feed(&bytes, &cuts), whole);
        if let Ok(Some(end)) = whole {
            prop_assert!(end <= bytes.len());
        }
    }

    /// A length-framed body takes exactly its length, however split.
    #[test]
    fn a_length_body_takes_exactly_its_length(
        length in 0u64..500,
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let expected = (bytes.len() as u64 >= length).then_some(length as usize);
        let mut pos = 0;
        let mut framing = Framing::Length(length);
        let mut ended = None;
        for piece in pieces(&bytes, &cuts) {
            match framing.consume(piece).unwrap() {
                Consumed::More => pos += piece.len(),
                Consumed::Done(n) => {
                    prop_assert!(n <= piece.len());
                    ended = Some(pos + n);
                    break;
                }
            }
        }
        if length == 0 && bytes.is_empty() {
            return Ok(());
        }
        prop_assert_eq!(ended, expected);
    }
}

/// `bytes` cut at the given places (sorted, deduplicated).
fn pieces<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in at.into_iter().chain([bytes.len()]) {
        if cut > start {
            out.push(&bytes[start..cut]);
            start = cut;
        }
    }
    out
}

/// Feeds `bytes` to a chunked decoder in pieces: where the body ended
/// (`None`: not yet), or the error.
fn feed(bytes: &[u8], cuts: &[prop::sample::Index]) -> Result<Option<usize>, ()> {
    let mut framing = Framing::Chunked(ChunkedDecoder::default());
    let mut pos = 0;
    for piece in pieces(bytes, cuts) {
        match framing.consume(piece) {
            Ok(Consumed::More) => pos += piece.len(),
            Ok(Consumed::Done(n)) => {
                assert!(n <= piece.len(), "ended past the piece");
                return Ok(Some(pos + n));
            }
            Err(_) => return Err(()),
        }
    }
    Ok(None)
}
