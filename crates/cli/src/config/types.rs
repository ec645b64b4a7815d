//! The task types a role knows (`TaskTypeArgs`: the config file's
//! `[task_types]`, `--task-type`, the key sealing their secrets).

use clap::Args;

/// The task types a role knows: the built-ins, the config file's
/// `[task_types.NAME]` tables and `--task-type` one-liners.
#[derive(Debug, Clone, Args)]
pub struct TaskTypeArgs {
    /// A task type in one line: `NAME=http:URL`, `NAME=command:PROGRAM ARG…`,
    /// `NAME=external` or `NAME=rust`; repeatable (`;`-separated in env).
    /// Full settings go in the config file as `[task_types.NAME]`.
    #[arg(long = "task-type", env = "WEIR_TASK_TYPE", value_delimiter = ';', value_parser = parse_task_type)]
    pub task_type: Vec<weir_core::TaskTypeSpec>,
    /// Key sealing sensitive task inputs (argon2's password, a type's
    /// `sensitive` fields) in the store: 64 hex digits, the same on every api
    /// and worker node. `weir up` keeps one in its data directory; without
    /// one, secrets stay out of answers and logs but not out of the database.
    #[arg(long, env = "WEIR_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,
    /// Most steps in one workflow, those its steps add while it runs
    /// included (more: 413); api nodes and workers both hold to it.
    #[arg(long, env = "WEIR_MAX_WORKFLOW_STEPS", default_value_t = weir_core::DEFAULT_MAX_WORKFLOW_STEPS, value_parser = parse_max_steps)]
    pub max_workflow_steps: usize,
}

fn parse_max_steps(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of steps, 1 or more, got {s:?}"
        )),
    }
}

fn parse_task_type(s: &str) -> Result<weir_core::TaskTypeSpec, String> {
    weir_core::TaskTypeConfig::parse_flag(s).map_err(|e| e.message)
}

impl TaskTypeArgs {
    /// `--secrets-key`, else the one kept in `path` (made on first use,
    /// readable by its owner only): how `weir up` seals without setup.
    pub fn key_from_file(&mut self, path: &std::path::Path) -> anyhow::Result<()> {
        if self.secrets_key.as_deref().is_some_and(|k| !k.is_empty()) {
            return Ok(());
        }
        let key = match std::fs::read_to_string(path) {
            Ok(key) => key.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = weir_core::Sealer::generate_hex();
                write_private(path, &key)?;
                key
            }
            Err(e) => anyhow::bail!("reading the secrets key {}: {e}", path.display()),
        };
        weir_core::Sealer::from_hex(&key)
            .map_err(|e| anyhow::anyhow!("secrets key in {}: {e}", path.display()))?;
        self.secrets_key = Some(key);
        Ok(())
    }

    /// The registry: built-ins, then the file's tables, then the flags
    /// (a later one replaces an earlier one of the same name).
    pub fn registry(
        &self,
        file: &[(String, weir_core::TaskTypeConfig)],
    ) -> anyhow::Result<weir_core::TaskTypes> {
        let sealer = match self.secrets_key.as_deref().filter(|k| !k.is_empty()) {
            Some(key) => {
                weir_core::Sealer::from_hex(key).map_err(|e| anyhow::anyhow!("secrets-key: {e}"))?
            }
            None => weir_core::Sealer::default(),
        };
        let mut types = weir_core::TaskTypes::default().with_sealer(sealer);
        for (name, table) in file {
            types.insert(table.clone().into_spec(name)?)?;
        }
        for spec in &self.task_type {
            types.insert(spec.clone())?;
        }
        Ok(types)
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}
