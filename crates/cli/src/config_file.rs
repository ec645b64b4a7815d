//! `--config FILE` (or `WEIR_CONFIG`): settings from a TOML file.
//!
//! Each top-level key is the long flag's name (`max-in-flight = 64`, or with
//! underscores), applied as its `WEIR_*` env var unless that is already set —
//! so a flag beats the environment, and the environment beats the file. Lists
//! become comma-separated values (`backends = ["http://a:8081", "http://b:8081=3"]`).

use std::ffi::OsString;
use std::path::Path;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The config file named by `--config FILE`, `--config=FILE` or `WEIR_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            return it.next().cloned();
        }
        if let Some(p) = s.strip_prefix("--config=") {
            return Some(p.into());
        }
    }
    std::env::var_os("WEIR_CONFIG")
}

/// The (env var, value) pairs a config file sets.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text).map_err(|message| ConfigFileError::Invalid {
        path: shown,
        message,
    })
}

fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut vars = Vec::new();
    for (key, value) in table {
        let var = format!("WEIR_{}", key.to_ascii_uppercase().replace('-', "_"));
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    other => Err(format!(
                        "{key}: list items must be strings or integers, not a {}",
                        other.type_str()
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(format!(
                    "{key}: a {} is not a setting (keys are flag names at the top level)",
                    other.type_str()
                ))
            }
        };
        vars.push((var, value));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_env_vars() {
        let vars = parse(
            "strategy = \"least_connections\"\nmax-in-flight = 64\naccess_log = true\n\
             backends = [\"http://a:1\", \"http://b:2=3\"]\n",
        )
        .unwrap();
        assert!(vars.contains(&("WEIR_STRATEGY".into(), "least_connections".into())));
        assert!(vars.contains(&("WEIR_MAX_IN_FLIGHT".into(), "64".into())));
        assert!(vars.contains(&("WEIR_ACCESS_LOG".into(), "true".into())));
        assert!(vars.contains(&("WEIR_BACKENDS".into(), "http://a:1,http://b:2=3".into())));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(parse("strategy = ").unwrap_err().contains("line 1"));
        assert!(parse("[table]\nx = 1").unwrap_err().contains("table"));
    }

    #[test]
    fn finds_the_path_in_args() {
        let args: Vec<OsString> = ["weir", "lb", "--config", "/etc/weir.toml"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(config_path(&args), Some("/etc/weir.toml".into()));
        let args: Vec<OsString> = ["weir", "--config=x.toml"].iter().map(Into::into).collect();
        assert_eq!(config_path(&args), Some("x.toml".into()));
    }
}
