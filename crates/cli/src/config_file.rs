//! `--config FILE` (or `WEIR_CONFIG`): settings from a TOML file.
//!
//! Each top-level key is the long flag's name (`max-in-flight = 64`, or with
//! underscores), matched to the flag through its `WEIR_*` env var and given
//! to clap as that flag's default ([`with_file_defaults`]) — so a flag beats
//! the environment, and the environment beats the file, without touching the
//! process environment. Lists become the flag's list (`backends =
//! ["http://a:8081", "http://b:8081=3"]`).
//!
//! The one table is `[task_types.NAME]`: the task types users define, read
//! into [`TaskTypeConfig`]s and checked when a role starts.

use std::ffi::OsString;
use std::path::Path;

use thiserror::Error;
use weir_core::TaskTypeConfig;

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

/// What a config file holds.
#[derive(Debug, Default)]
pub struct FileConfig {
    /// (flag name, values) for the flags it sets, names with dashes; a
    /// TOML list gives several values, anything else one.
    pub vars: Vec<(String, Vec<String>)>,
    /// `[task_types.NAME]` tables, by name.
    pub task_types: Vec<(String, TaskTypeConfig)>,
}

/// `cmd` with the file's values as the defaults of the flags they name, in
/// every subcommand. A key no flag of the command takes is ignored there
/// (one file serves every role).
pub fn with_file_defaults(cmd: clap::Command, vars: &[(String, Vec<String>)]) -> clap::Command {
    let mut cmd = cmd;
    let found: Vec<(clap::Id, Vec<String>, Option<char>)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let (_, value) = vars.iter().find(|(key, _)| takes(a, key))?;
            Some((a.get_id().clone(), value.clone(), a.get_value_delimiter()))
        })
        .collect();
    for (id, values, delimiter) in found {
        cmd = cmd.mut_arg(id, |a| match (values.as_slice(), delimiter) {
            // One string for a list flag reads as its env var would.
            ([one], Some(d)) => {
                a.default_values(one.split(d).map(str::to_owned).collect::<Vec<_>>())
            }
            ([one], None) => a.default_value(one.clone()),
            _ => a.default_values(values),
        });
    }
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |sc| with_file_defaults(sc, vars));
    }
    cmd
}

/// Whether flag `a` is the one file key `key` names: by its long name, or
/// by its env var's (`rate-limit-routes` for `WEIR_RATE_LIMIT_ROUTES`).
fn takes(a: &clap::Arg, key: &str) -> bool {
    let env = a.get_env().and_then(|e| e.to_str());
    a.get_long() == Some(key)
        || env.is_some_and(|e| e == format!("WEIR_{}", key.to_ascii_uppercase().replace('-', "_")))
}

/// The first file key that no flag of any command takes (a typo).
pub fn unknown_key(cmd: &clap::Command, vars: &[(String, Vec<String>)]) -> Option<String> {
    fn known(cmd: &clap::Command, key: &str) -> bool {
        cmd.get_arguments().any(|a| takes(a, key)) || cmd.get_subcommands().any(|sc| known(sc, key))
    }
    vars.iter()
        .find(|(key, _)| !known(cmd, key))
        .map(|(key, _)| key.clone())
}

/// The command line as `main` reads it: the config file (named by
/// `--config` or `WEIR_CONFIG`) gives the flags' defaults. What a reload
/// reads again; an error is one line.
pub fn parse_cli(args: &[OsString]) -> Result<crate::config::Cli, String> {
    use clap::{CommandFactory, FromArgMatches};
    let file = match config_path(args) {
        Some(path) => read(Path::new(&path)).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let command = crate::config::Cli::command();
    if let Some(key) = unknown_key(&command, &file.vars) {
        return Err(format!("config file: {key}: no such setting"));
    }
    let matches = with_file_defaults(command, &file.vars)
        .try_get_matches_from(args)
        .map_err(|e| e.to_string().lines().next().unwrap_or_default().to_string())?;
    crate::config::Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

/// Reads and parses a config file.
pub fn read(path: &Path) -> Result<FileConfig, ConfigFileError> {
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

fn parse(text: &str) -> Result<FileConfig, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let task_types = match table.remove("task_types") {
        Some(t) => task_type_tables(t)?,
        None => Vec::new(),
    };
    let mut vars = Vec::new();
    if let Some(tables) = table.remove("tls") {
        vars.extend(tls_tables(tables)?);
    }
    for (key, value) in table {
        let var = key.to_ascii_lowercase().replace('_', "-");
        let value = match value {
            toml::Value::String(s) => vec![s],
            toml::Value::Integer(i) => vec![i.to_string()],
            toml::Value::Float(f) => vec![f.to_string()],
            toml::Value::Boolean(b) => vec![b.to_string()],
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
                .collect::<Result<Vec<_>, _>>()?,
            other => {
                return Err(format!(
                    "{key}: a {} is not a setting (keys are flag names at the top level)",
                    other.type_str()
                ))
            }
        };
        vars.push((var, value));
    }
    Ok(FileConfig { vars, task_types })
}

/// `[[tls]]` tables: `cert` and `key` files, for the server `names` given
/// (`--tls NAME=CERT:KEY` each), or the default certificate without them
/// (`--tls-cert`/`--tls-key`). A plain list is `--tls` values as they are.
fn tls_tables(value: toml::Value) -> Result<Vec<(String, Vec<String>)>, String> {
    let toml::Value::Array(items) = value else {
        return Err("tls: expected [[tls]] tables or a list of NAME=CERT:KEY".into());
    };
    let mut by_name = Vec::new();
    let mut default = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let table = match item {
            toml::Value::String(s) => {
                by_name.push(s);
                continue;
            }
            toml::Value::Table(t) => t,
            other => {
                return Err(format!(
                    "tls[{i}]: a {} is not a certificate",
                    other.type_str()
                ))
            }
        };
        let text = |key: &str| match table.get(key) {
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(format!("tls[{i}].{key}: expected a file path")),
        };
        let (cert, key) = (text("cert")?, text("key")?);
        if let Some(unknown) = table
            .keys()
            .find(|k| !["cert", "key", "names"].contains(&k.as_str()))
        {
            return Err(format!(
                "tls[{i}].{unknown}: not a setting (cert, key, names)"
            ));
        }
        match table.get("names") {
            None => default.push((cert, key)),
            Some(toml::Value::Array(names)) => {
                for name in names {
                    let toml::Value::String(name) = name else {
                        return Err(format!("tls[{i}].names: expected server names"));
                    };
                    by_name.push(format!("{name}={cert}:{key}"));
                }
            }
            Some(_) => return Err(format!("tls[{i}].names: expected a list of server names")),
        }
    }
    let mut vars = Vec::new();
    match default.as_slice() {
        [] => {}
        [(cert, key)] => {
            vars.push(("tls-cert".to_string(), vec![cert.clone()]));
            vars.push(("tls-key".to_string(), vec![key.clone()]));
        }
        _ => return Err("tls: more than one [[tls]] table without names (the default)".into()),
    }
    if !by_name.is_empty() {
        vars.push(("tls".to_string(), by_name));
    }
    Ok(vars)
}

/// `[task_types.NAME]` tables; an unknown key is named with its table.
fn task_type_tables(value: toml::Value) -> Result<Vec<(String, TaskTypeConfig)>, String> {
    let toml::Value::Table(types) = value else {
        return Err("task_types: expected tables, [task_types.NAME]".into());
    };
    types
        .into_iter()
        .map(|(name, table)| {
            if !table.is_table() {
                return Err(format!("task_types.{name}: expected a table"));
            }
            let config: TaskTypeConfig = table
                .try_into()
                .map_err(|e: toml::de::Error| format!("task_types.{name}: {}", e.message()))?;
            Ok((name, config))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_flag_values() {
        let vars = parse(
            "strategy = \"least_connections\"\nmax-in-flight = 64\naccess_log = true\n\
             backends = [\"http://a:1\", \"http://b:2=3\"]\n",
        )
        .unwrap()
        .vars;
        let has = |k: &str, v: &[&str]| {
            vars.contains(&(k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        };
        assert!(has("strategy", &["least_connections"]));
        assert!(has("max-in-flight", &["64"]));
        assert!(has("access-log", &["true"]));
        assert!(has("backends", &["http://a:1", "http://b:2=3"]));
    }

    #[test]
    fn tls_tables_become_certificate_flags() {
        let vars = parse(
            "[[tls]]\ncert = \"/c/site.crt\"\nkey = \"/c/site.key\"\n\
             [[tls]]\nnames = [\"a.example\", \"*.b.example\"]\ncert = \"/c/a.crt\"\nkey = \"/c/a.key\"\n",
        )
        .unwrap()
        .vars;
        assert!(vars.contains(&("tls-cert".into(), vec!["/c/site.crt".into()])));
        assert!(vars.contains(&("tls-key".into(), vec!["/c/site.key".into()])));
        assert!(vars.contains(&(
            "tls".into(),
            vec![
                "a.example=/c/a.crt:/c/a.key".into(),
                "*.b.example=/c/a.crt:/c/a.key".into()
            ]
        )));
        let err = parse("[[tls]]\ncert = \"/c\"\n").unwrap_err();
        assert_eq!(err, "tls[0].key: expected a file path");
        let err = parse("[[tls]]\ncert = \"/c\"\nkey = \"/k\"\nname = \"x\"\n").unwrap_err();
        assert!(err.starts_with("tls[0].name:"), "{err}");
        let two = "[[tls]]\ncert = \"/c\"\nkey = \"/k\"\n[[tls]]\ncert = \"/d\"\nkey = \"/k\"\n";
        assert!(parse(two).unwrap_err().contains("more than one"));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        assert!(parse("strategy = ").unwrap_err().contains("line 1"));
        assert!(parse("[table]\nx = 1").unwrap_err().contains("table"));
    }

    #[test]
    fn task_type_tables_are_read_and_their_typos_named() {
        let f = parse(
            "[task_types.deliver]\nhandler = \"http\"\nurl = \"http://127.0.0.1:9/in\"\n\
             timeout = \"10s\"\n[task_types.deliver.headers]\nX-Team = \"core\"\n\
             [task_types.resize]\nhandler = \"external\"\n\
             input_schema = { type = \"object\", required = [\"width\"] }\n",
        )
        .unwrap();
        assert_eq!(f.task_types.len(), 2);
        let (name, deliver) = &f.task_types[0];
        assert_eq!(name, "deliver");
        assert_eq!(deliver.headers.as_ref().unwrap()["X-Team"], "core");
        assert!(f.task_types[1].1.input_schema.is_some());
        let err = parse("[task_types.deliver]\nhandler = \"http\"\nurll = \"x\"\n").unwrap_err();
        assert!(
            err.starts_with("task_types.deliver:") && err.contains("urll"),
            "{err}"
        );
    }

    #[test]
    fn file_values_are_flag_defaults_below_env_and_flags() {
        use clap::{CommandFactory, FromArgMatches};
        let vars = parse(
            "strategy = \"least_connections\"\nmax-in-flight = 64\n\
             backends = [\"http://a:1\", \"http://b:2=3\"]\naccess_log = true\n\
             rate-limit-route = [\"POST /hash/=10:20\", \"/x=5\"]\n",
        )
        .unwrap()
        .vars;
        let parse_lb = |args: &[&str]| {
            let cmd = with_file_defaults(crate::config::Cli::command(), &vars);
            let cli = crate::config::Cli::from_arg_matches(&cmd.get_matches_from(args)).unwrap();
            match cli.command {
                crate::config::Command::Lb(lb) => lb,
                _ => unreachable!(),
            }
        };
        let lb = parse_lb(&["weir", "lb"]);
        assert_eq!(lb.balancer.strategy, weir_lb::Strategy::LeastConnections);
        assert_eq!(lb.balancer.max_in_flight, Some(64));
        assert_eq!(lb.backends, ["http://a:1", "http://b:2=3"]);
        assert!(lb.balancer.access_log);
        // Regression: a key named by the flag (not its env var) was ignored.
        assert_eq!(lb.balancer.rate_limit_routes.len(), 2);
        let lb = parse_lb(&["weir", "lb", "--strategy", "round_robin"]);
        assert_eq!(
            lb.balancer.strategy,
            weir_lb::Strategy::RoundRobin,
            "a flag wins"
        );
    }

    #[test]
    fn a_key_no_flag_takes_is_named() {
        use clap::CommandFactory;
        let cmd = crate::config::Cli::command();
        let ok = parse(
            "strategy = \"round_robin\"\nworker_token = \"t\"\nrate-limit-route = \"/x=5\"\n",
        )
        .unwrap();
        assert_eq!(unknown_key(&cmd, &ok.vars), None);
        let typo = parse("strategy = \"round_robin\"\nmax-in-fligth = 3\n").unwrap();
        assert_eq!(
            unknown_key(&cmd, &typo.vars).as_deref(),
            Some("max-in-fligth")
        );
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
