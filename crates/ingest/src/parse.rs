//! Turning a `POST /write` body into events, or into a precise error.
//!
//! A body is one JSON object, a JSON array of objects, or NDJSON (one object a
//! line). Nothing is half-accepted: the first bad event rejects the batch.
//! Events are kept as the client's text (validated, not re-encoded), so the
//! stored event is what was sent.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;
use uuid::Uuid;
use weir_core::NewEvent;

/// Longest client-supplied event id.
pub const MAX_ID_BYTES: usize = 256;

/// Largest single event (one NDJSON line, one array element), so one event
/// cannot take a whole body's allowance in one row.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// How the body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// One object, or an array of objects.
    Json,
    /// One object per line (`application/x-ndjson`); blank lines are skipped.
    Ndjson,
}

/// Why a body was rejected. Positions are 1-based.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("invalid JSON at line {line}, column {column}: {reason}")]
    Syntax {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{at} is not a JSON object")]
    NotAnObject { at: String },
    #[error("{at} has an invalid id: {reason}")]
    InvalidId { at: String, reason: String },
    #[error("{at} holds \\u0000, which the database cannot store in JSON")]
    Unstorable { at: String },
    #[error("the body holds {count} events; at most {max} are accepted per request")]
    TooManyEvents { count: usize, max: usize },
    #[error("{at} is {size} bytes; one event may be at most {max}")]
    EventTooLarge { at: String, size: usize, max: usize },
}

/// Where generated ids come from.
#[derive(Clone, Copy, Debug)]
pub enum IdSource<'a> {
    /// A fresh time-ordered id per event.
    Random,
    /// Derived from the request's `Idempotency-Key` and the event's position,
    /// so the same batch sent again gets the same ids (and is stored once).
    Key(&'a str),
}

/// What makes two batches the same request under one idempotency key: the
/// events' bodies in order (their ids come from the key). SHA-256, hex.
pub fn fingerprint(events: &[NewEvent]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for e in events {
        hash.update(e.body.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

/// Parses `body` into events received at `now`.
pub fn parse_events(
    body: &[u8],
    format: BodyFormat,
    ids: IdSource<'_>,
    max_events: usize,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, ParseError> {
    let raws = match format {
        BodyFormat::Json => split_json(body)?,
        BodyFormat::Ndjson => split_ndjson(body, max_events)?,
    };
    if raws.len() > max_events {
        return Err(ParseError::TooManyEvents {
            count: raws.len(),
            max: max_events,
        });
    }
    if let Some((at, raw)) = raws
        .iter()
        .find(|(_, raw)| raw.get().len() > MAX_EVENT_BYTES)
    {
        return Err(ParseError::EventTooLarge {
            at: at.to_string(),
            size: raw.get().len(),
            max: MAX_EVENT_BYTES,
        });
    }
    raws.into_iter()
        .enumerate()
        .map(|(index, (at, raw))| event(raw, at, index, ids, now))
        .collect()
}

/// Each event's raw text, with where it was (for error messages).
type Located<'a> = (Where, &'a RawValue);

#[derive(Clone, Copy, Debug)]
enum Where {
    Body,
    Element(usize),
    Line(usize),
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Body => f.write_str("the body"),
            Where::Element(i) => write!(f, "array element {i}"),
            Where::Line(n) => write!(f, "line {n}"),
        }
    }
}

fn syntax(e: &serde_json::Error, line_offset: usize) -> ParseError {
    // serde_json's Display appends " at line L column C"; keep just the reason.
    let full = e.to_string();
    let reason = match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    };
    ParseError::Syntax {
        line: e.line() + line_offset,
        column: e.column(),
        reason,
    }
}

fn split_json(body: &[u8]) -> Result<Vec<Located<'_>>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(body).map_err(|e| syntax(&e, 0))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| (Where::Element(i), raw))
            .collect())
    } else {
        let raw: &RawValue = serde_json::from_slice(body).map_err(|e| syntax(&e, 0))?;
        Ok(vec![(Where::Body, raw)])
    }
}

fn split_ndjson(body: &[u8], max_events: usize) -> Result<Vec<Located<'_>>, ParseError> {
    let mut events = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if events.len() == max_events {
            // Count the rest only to say how many there were.
            let rest = body
                .split(|b| *b == b'\n')
                .skip(i)
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .count();
            return Err(ParseError::TooManyEvents {
                count: max_events + rest,
                max: max_events,
            });
        }
        let raw: &RawValue = serde_json::from_slice(line).map_err(|e| syntax(&e, i))?;
        events.push((Where::Line(i + 1), raw));
    }
    Ok(events)
}

#[derive(Deserialize)]
struct IdField<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
}

fn event(
    raw: &RawValue,
    at: Where,
    index: usize,
    ids: IdSource<'_>,
    now: DateTime<Utc>,
) -> Result<NewEvent, ParseError> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(ParseError::NotAnObject { at: at.to_string() });
    }
    // PostgreSQL's jsonb refuses NUL; refusing it here keeps one client's
    // event from failing the group commit it shares with others.
    if text.contains("\\u0000") {
        return Err(ParseError::Unstorable { at: at.to_string() });
    }
    let invalid = |reason: String| ParseError::InvalidId {
        at: at.to_string(),
        reason,
    };
    let field: IdField = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let id = match field.id.map(RawValue::get) {
        None | Some("null") => None,
        Some(s) if s.starts_with('"') => {
            let id: String = serde_json::from_str(s).map_err(|e| invalid(e.to_string()))?;
            if id.is_empty() {
                return Err(invalid("it is empty".into()));
            }
            Some(id)
        }
        Some(n) if n.bytes().all(|b| b.is_ascii_digit() || b == b'-') => Some(n.to_owned()),
        Some(_) => return Err(invalid("an id is a string or an integer".into())),
    };
    if let Some(id) = &id {
        if id.len() > MAX_ID_BYTES {
            return Err(invalid(format!("longer than {MAX_ID_BYTES} bytes")));
        }
    }
    let id = id.unwrap_or_else(|| match ids {
        IdSource::Random => Uuid::now_v7().to_string(),
        IdSource::Key(key) => format!("{key}#{index}"),
    });
    Ok(NewEvent {
        id,
        body: text.to_owned(),
        received_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, format: BodyFormat) -> Result<Vec<NewEvent>, ParseError> {
        parse_events(body.as_bytes(), format, IdSource::Random, 100, Utc::now())
    }

    #[test]
    fn a_batch_is_fingerprinted_by_its_bodies_not_its_ids() {
        let batch = |body: &str, key: &str| {
            parse_events(
                body.as_bytes(),
                BodyFormat::Ndjson,
                IdSource::Key(key),
                100,
                Utc::now(),
            )
            .unwrap()
        };
        let a = fingerprint(&batch("{\"v\":1}\n{\"v\":2}\n", "k"));
        assert_eq!(a, fingerprint(&batch("{\"v\":1}\n{\"v\":2}\n", "other")));
        assert_ne!(a, fingerprint(&batch("{\"v\":1}\n{\"v\":3}\n", "k")));
        assert_ne!(a, fingerprint(&batch("{\"v\":1}\n", "k")));
    }

    #[test]
    fn one_object_an_array_and_ndjson_give_the_same_events() {
        let one = parse(r#"{"id":"a","v":1}"#, BodyFormat::Json).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, "a");
        assert_eq!(one[0].body, r#"{"id":"a","v":1}"#);
        let array = parse(r#" [ {"id":"a"}, {"id":7,"x":[1,2]} ] "#, BodyFormat::Json).unwrap();
        assert_eq!(
            array.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "7"]
        );
        assert_eq!(array[1].body, r#"{"id":7,"x":[1,2]}"#);
        let nd = parse("{\"id\":\"a\"}\n\n  \n{\"id\":7}\n", BodyFormat::Ndjson).unwrap();
        assert_eq!(
            nd.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["a", "7"]
        );
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = parse("{\"a\":1}\n{\"a\":1}\n{\"a\": tru}\n", BodyFormat::Ndjson).unwrap_err();
        match e {
            ParseError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 10)),
            other => panic!("{other:?}"),
        }
        let e = parse("[{\"a\":1},\n {\"a\":}]", BodyFormat::Json).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid JSON at line 2, column 7"),
            "{e}"
        );
    }

    #[test]
    fn non_objects_and_bad_ids_are_rejected_with_their_position() {
        let e = parse(r#"[{"a":1}, 5]"#, BodyFormat::Json).unwrap_err();
        assert_eq!(e.to_string(), "array element 1 is not a JSON object");
        let e = parse("{}\n\"x\"", BodyFormat::Ndjson).unwrap_err();
        assert_eq!(e.to_string(), "line 2 is not a JSON object");
        let e = parse(r#"{"id":{"x":1}}"#, BodyFormat::Json).unwrap_err();
        assert!(matches!(e, ParseError::InvalidId { .. }), "{e:?}");
        let e = parse(r#"{"a":"x\u0000"}"#, BodyFormat::Json).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the body holds \\u0000, which the database cannot store in JSON"
        );
        let e = parse(r#"{"id":1.5}"#, BodyFormat::Json).unwrap_err();
        assert!(matches!(e, ParseError::InvalidId { .. }), "{e:?}");
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert!(matches!(
            parse(&long, BodyFormat::Json),
            Err(ParseError::InvalidId { .. })
        ));
    }

    #[test]
    fn too_many_events_is_refused_before_any_is_built() {
        let body = "{}\n".repeat(101);
        assert_eq!(
            parse(&body, BodyFormat::Ndjson).unwrap_err(),
            ParseError::TooManyEvents {
                count: 101,
                max: 100
            }
        );
        let body = format!("[{}{{}}]", "{},".repeat(100));
        assert!(matches!(
            parse(&body, BodyFormat::Json),
            Err(ParseError::TooManyEvents { count: 101, .. })
        ));
    }

    #[test]
    fn ids_from_an_idempotency_key_repeat_for_the_same_batch() {
        let body = br#"[{"v":1},{"v":2},{"id":"mine"}]"#;
        let a = parse_events(body, BodyFormat::Json, IdSource::Key("k1"), 10, Utc::now()).unwrap();
        let b = parse_events(body, BodyFormat::Json, IdSource::Key("k1"), 10, Utc::now()).unwrap();
        let ids = |v: &[NewEvent]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(ids(&a), ["k1#0", "k1#1", "mine"]);
        let random =
            parse_events(body, BodyFormat::Json, IdSource::Random, 10, Utc::now()).unwrap();
        assert_ne!(random[0].id, random[1].id);
    }
}
