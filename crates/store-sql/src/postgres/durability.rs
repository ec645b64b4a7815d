//! PostgreSQL's settings under which a commit it acknowledged may be lost,
//! named at start.

use super::PgExec;

/// Logs one warning naming each server setting under which a commit
/// PostgreSQL acknowledged (and so a task or event weir acknowledged) may be
/// lost, as PostgreSQL's documentation describes them. Not reading them is
/// not an error: the warning is advice.
pub(super) async fn warn_if_commits_may_be_lost(exec: &PgExec) {
    let settings: Vec<(String, String)> = match sqlx::query_as(
        "SELECT name, setting FROM pg_settings \
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')",
    )
    .fetch_all(exec)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, "could not read PostgreSQL's durability settings");
            return;
        }
    };
    let unsafe_settings = unsafe_durability(&settings);
    if !unsafe_settings.is_empty() {
        tracing::warn!(
            "PostgreSQL runs with {}: {}",
            unsafe_settings
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            unsafe_settings
                .iter()
                .map(|(_, why)| *why)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
}

/// The settings among `settings` (name, value) that may lose acknowledged
/// commits, each with what it risks.
fn unsafe_durability(settings: &[(String, String)]) -> Vec<(String, &'static str)> {
    settings
        .iter()
        .filter_map(|(name, value)| {
            let why = match (name.as_str(), value.as_str()) {
                ("fsync", "off") => {
                    "fsync=off: a server crash or power loss may lose or corrupt acknowledged tasks and events"
                }
                ("synchronous_commit", "off") => {
                    "synchronous_commit=off: a server crash may lose the last acknowledged tasks and events"
                }
                ("full_page_writes", "off") => {
                    "full_page_writes=off: a power loss may leave torn pages that lose acknowledged data"
                }
                _ => return None,
            };
            Some((format!("{name}={value}"), why))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unsafe_durability;

    #[test]
    fn names_each_setting_that_may_lose_a_commit() {
        let s = |n: &str, v: &str| (n.to_string(), v.to_string());
        let found = unsafe_durability(&[
            s("fsync", "off"),
            s("synchronous_commit", "on"),
            s("full_page_writes", "off"),
        ]);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["fsync=off", "full_page_writes=off"]);
        assert!(
            unsafe_durability(&[s("fsync", "on"), s("synchronous_commit", "local")]).is_empty()
        );
    }
}
