//! The W3C trace context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` headers, read strictly, written in
//! version 00, and stored with a task as one line each.

use std::fmt::Write as _;

/// Longest `tracestate` kept (the recommendation's limit): a longer one is
/// dropped rather than cut, since a cut entry would be a wrong one.
const MAX_TRACESTATE: usize = 512;

/// Where a hop stands in a trace: the trace, the span that sent the request
/// (or the task) on, whether the trace is sampled, and the vendors' state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Reads a `traceparent` header (and `tracestate`, kept when it is a
    /// valid header value of at most 512 bytes). None for anything the
    /// specification says to ignore: a bad length, upper-case hex, an
    /// all-zero id, version `ff`, or extra fields on version 00.
    pub fn parse(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<TraceContext> {
        let t = traceparent.trim_ascii();
        if t.len() < 55 || t[2] != b'-' || t[35] != b'-' || t[52] != b'-' {
            return None;
        }
        let version = hex_byte(&t[0..2])?;
        // Version 00 is exactly 55 bytes; a later version may add fields
        // after a dash, which a reader of 00 ignores.
        match version {
            0xff => return None,
            0 if t.len() != 55 => return None,
            _ if t.len() > 55 && t[55] != b'-' => return None,
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&t[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&t[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&t[53..55])?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let tracestate = tracestate
            .map(<[u8]>::trim_ascii)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .filter(|s| s.iter().all(|&b| (0x20..0x7f).contains(&b)))
            .map(|s| String::from_utf8_lossy(s).into_owned());
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            tracestate,
        })
    }

    /// Reads a request's headers: two `traceparent`s make neither valid.
    pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceContext> {
        let mut parents = headers.get_all("traceparent").iter();
        match (parents.next(), parents.next()) {
            (Some(only), None) => TraceContext::parse(
                only.as_bytes(),
                headers.get("tracestate").map(|v| v.as_bytes()),
            ),
            _ => None,
        }
    }

    /// The `traceparent` header's value.
    pub fn traceparent(&self) -> String {
        let mut out = Vec::with_capacity(55);
        self.write_traceparent(&mut out);
        String::from_utf8(out).expect("hex is ASCII")
    }

    /// Appends the `traceparent` header's value to `out`.
    pub fn write_traceparent(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"00-");
        push_hex(out, &self.trace_id);
        out.push(b'-');
        push_hex(out, &self.span_id);
        out.extend_from_slice(if self.sampled { b"-01" } else { b"-00" });
    }

    /// The trace id in hex, as tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        for b in self.trace_id {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The form stored with a task: `traceparent`, then `tracestate` on a
    /// second line if there is one (neither may hold a line break).
    pub fn to_stored(&self) -> String {
        match &self.tracestate {
            Some(state) => format!("{}\n{state}", self.traceparent()),
            None => self.traceparent(),
        }
    }

    /// Reads [`TraceContext::to_stored`]'s form.
    pub fn from_stored(stored: &str) -> Option<TraceContext> {
        let (parent, state) = match stored.split_once('\n') {
            Some((parent, state)) => (parent, Some(state.as_bytes())),
            None => (stored, None),
        };
        TraceContext::parse(parent.as_bytes(), state)
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let ctx = TraceContext::parse(EXAMPLE.as_bytes(), Some(b"congo=t61rcWkgMzE")).unwrap();
        assert!(ctx.sampled);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.traceparent(), EXAMPLE);
        assert_eq!(ctx.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(TraceContext::from_stored(&ctx.to_stored()), Some(ctx));
    }

    #[test]
    fn what_the_specification_says_to_ignore_is_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad.as_bytes(), None), None, "{bad:?}");
        }
        // A later version's extra fields are ignored, its ids read.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-next";
        let ctx = TraceContext::parse(later.as_bytes(), None).unwrap();
        assert!(!ctx.sampled);
        assert_eq!(
            ctx.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    #[test]
    fn a_tracestate_that_could_not_be_sent_on_is_dropped() {
        let long = "a=".to_string() + &"b".repeat(600);
        for bad in [long.as_str(), "a=b\nc=d", ""] {
            let ctx = TraceContext::parse(EXAMPLE.as_bytes(), Some(bad.as_bytes())).unwrap();
            assert_eq!(ctx.tracestate, None, "{bad:?}");
        }
    }
}
