//! A task type's `input_schema`: a JSON Schema compiled once, when the type is
//! registered, and checked against every submission's input.
//!
//! `boon` implements drafts 4 to 2020-12 (a schema without `$schema` is read
//! as 2020-12). Its `$ref`s resolve inside the schema document and to the
//! drafts' own metaschemas only: nothing is loaded from files or the
//! network, whoever wrote the schema. Two limits (README, "Your own task
//! types"): a `pattern` is a `regex` crate expression (no lookaround or
//! backreferences), and `multipleOf` is checked in floating point (0.07 is
//! not a multiple of 0.01 there: use integer cents).

use std::fmt::Write as _;

use serde_json::Value;

/// The longest description of a mismatch put in an error message; a schema
/// of nested `anyOf`s explains itself at great length.
const MAX_MESSAGE_BYTES: usize = 512;

/// Where the schema is said to live: it names the schema in compile errors,
/// and relative `$id`s and `$ref`s resolve against it (to a host that does
/// not exist, by a scheme nothing loads).
const LOCATION: &str = "http://weir.invalid/input_schema.json";

/// A compiled schema.
pub struct InputSchema {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

/// Where an input departs from the schema and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// A JSON Pointer into the input; `/` for the input itself.
    pub at: String,
    pub message: String,
}

impl InputSchema {
    /// Compiles `schema`; the error says why it is not a valid JSON Schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        // A loader of no scheme at all: `$ref`s stay inside the document.
        compiler.use_loader(Box::new(boon::SchemeUrlLoader::new()));
        let mut schemas = boon::Schemas::new();
        compiler
            .add_resource(LOCATION, schema.clone())
            .map_err(|e| with_sources(&e))?;
        let index = compiler
            .compile(LOCATION, &mut schemas)
            .map_err(|e| with_sources(&e))?;
        Ok(InputSchema { schemas, index })
    }

    /// Checks `input`: the first place it departs from the schema.
    pub fn check(&self, input: &Value) -> Result<(), Mismatch> {
        let Err(e) = self.schemas.validate(input, self.index) else {
            return Ok(());
        };
        // The root error only says that the schema failed; its first cause
        // is the keyword that did.
        let first = e.causes.first().unwrap_or(&e);
        let at = first.instance_location.to_string();
        let mut message = String::new();
        describe(first, &mut message);
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Err(Mismatch {
            at: if at.is_empty() { "/".into() } else { at },
            message,
        })
    }
}

/// `e`'s kind, then its causes' in brackets (an `anyOf` lists each branch's).
fn describe(e: &boon::ValidationError<'_, '_>, out: &mut String) {
    let _ = write!(out, "{}", e.kind);
    if e.causes.is_empty() || out.len() > MAX_MESSAGE_BYTES {
        return;
    }
    out.push_str(" (");
    for (i, cause) in e.causes.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        describe(cause, out);
    }
    out.push(')');
}

/// An error with its sources: boon's compile errors put the detail (which
/// keyword is malformed, which `$ref` cannot load) in the source.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> InputSchema {
        InputSchema::compile(&v).unwrap()
    }

    #[test]
    fn a_mismatch_names_the_path_and_the_rule() {
        let s = schema(json!({"type": "object", "required": ["width"],
            "properties": {"width": {"type": "integer", "minimum": 1}}}));
        assert_eq!(s.check(&json!({"width": 3})), Ok(()));
        let m = s.check(&json!({"width": 0})).unwrap_err();
        assert_eq!(m.at, "/width");
        assert!(m.message.contains(">=1"), "{m:?}");
        let m = s.check(&json!({"width": "x"})).unwrap_err();
        assert!(m.message.contains("integer"), "{m:?}");
        let m = s.check(&json!({})).unwrap_err();
        assert_eq!(m.at, "/");
        assert!(m.message.contains("width"), "{m:?}");
    }

    #[test]
    fn each_branch_of_a_failed_any_of_is_told() {
        let s = schema(json!({"$ref": "#/$defs/id",
            "$defs": {"id": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}));
        assert_eq!(s.check(&json!(7)), Ok(()));
        let m = s.check(&json!(1.5)).unwrap_err();
        assert!(
            m.message.contains("string") && m.message.contains("integer"),
            "{m:?}"
        );
    }

    #[test]
    fn older_drafts_are_read_by_their_schema_keyword() {
        // Draft 4's boolean exclusiveMaximum is not 2020-12's number.
        let s = schema(json!({"$schema": "http://json-schema.org/draft-04/schema#",
            "type": "number", "maximum": 10, "exclusiveMaximum": true}));
        assert_eq!(s.check(&json!(9)), Ok(()));
        assert!(s.check(&json!(10)).is_err());
    }

    #[test]
    fn an_invalid_schema_says_why() {
        let e = InputSchema::compile(&json!({"type": 7})).err().unwrap();
        assert!(e.contains("type"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn refs_cannot_reach_files_or_the_network() {
        // A valid schema on disk: boon's default loader would read it.
        let path = std::env::temp_dir().join(format!("weir-schema-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"type": "string"}"#).unwrap();
        let file = format!("file://{}", path.display());
        for r in [file.as_str(), "other.json", "http://127.0.0.1:1/s.json"] {
            let e = InputSchema::compile(&json!({"$ref": r})).err();
            assert!(e.is_some(), "{r} compiled");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn relative_ids_resolve_inside_the_document() {
        let s = schema(json!({"$defs": {"a": {"$id": "a.json", "type": "integer"}},
            "$ref": "a.json"}));
        assert_eq!(s.check(&json!(3)), Ok(()));
        assert!(s.check(&json!("x")).is_err());
    }

    #[test]
    fn a_long_explanation_is_cut() {
        let branches: Vec<Value> = (0..200)
            .map(|i| json!({"type": "string", "minLength": i + 1000}))
            .collect();
        let s = schema(json!({"anyOf": branches}));
        let m = s.check(&json!("short")).unwrap_err();
        assert!(
            m.message.len() <= MAX_MESSAGE_BYTES + 3,
            "{}",
            m.message.len()
        );
    }
}
