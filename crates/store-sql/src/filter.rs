//! Filters shared by the dialects. The fast claim's filter has names inlined as
//! constants: a bound list
//! the planner cannot see makes it give up the claim index.

/// `'a', 'b'` for an SQL `IN (…)` list; quotes doubled, so any name is safe.
pub(crate) fn sql_string_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fast claim's extra conditions: no key, not in a limited queue, in
/// one of the claimer's queues, of a type it runs. Names are inlined as
/// constants.
///
/// Which queues are limited (or paused) is read by the statement itself, not
/// taken from a cache: a limit set or a pause committed before a task was
/// inserted holds for every claim that can see the task (one hashed lookup
/// per statement; the queues table is small).
pub(crate) fn fast_claim_filter(only: Option<&[String]>, types: Option<&[String]>) -> String {
    let mut filter = String::from(
        "concurrency_key IS NULL AND queue NOT IN (SELECT name FROM queues WHERE limited)",
    );
    if let Some(only) = only {
        if only.is_empty() {
            filter.push_str(" AND FALSE");
        } else {
            filter.push_str(&format!(" AND queue IN ({})", sql_string_list(only)));
        }
    }
    if let Some(types) = types {
        if types.is_empty() {
            filter.push_str(" AND FALSE");
        } else {
            filter.push_str(&format!(" AND kind IN ({})", sql_string_list(types)));
        }
    }
    filter
}

/// A `LIKE` pattern matching `text` anywhere, its wildcards escaped (with
/// `\`): a user's search text is text, not a pattern.
pub(crate) fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}
