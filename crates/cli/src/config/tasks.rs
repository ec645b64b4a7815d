//! The flags of the commands that talk to a running cluster (`weir queues`,
//! `weir tasks`): where it is, the key, and how to print.

use std::time::Duration;

use clap::Args;

/// Where the cluster is and how to print its answers.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// The lb's (or an API node's) URL.
    #[arg(
        long,
        global = true,
        env = "WEIR_STATUS_TARGET",
        default_value = "http://127.0.0.1:8080"
    )]
    pub target: String,
    /// A client key: `read` to list, `manage` to change, for API nodes
    /// started with `--api-keys`.
    #[arg(long, global = true, env = "WEIR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    pub action: TasksAction,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Which tasks: every flag given narrows.
#[derive(Debug, Clone, Default, Args)]
pub struct TaskFilterArgs {
    /// waiting, queued, running, succeeded, dead or cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// A task type.
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(long)]
    pub queue: Option<String>,
    #[arg(long)]
    pub tenant: Option<String>,
    /// A workflow's id: its steps.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Created within this long before now (e.g. `1h`, `2d`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Finished within this long before now.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub finished_since: Option<Duration>,
    /// Text in the last error, any case.
    #[arg(long)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TasksAction {
    /// The newest tasks matching the filter.
    List {
        #[command(flatten)]
        filter: TaskFilterArgs,
        /// Most recently finished first (finished tasks only).
        #[arg(long)]
        by_finish: bool,
        /// How many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One task: input (secrets redacted), result, attempts and errors.
    Show { id: String },
    /// Dead tasks queued again with fresh attempts.
    Retry(BulkTarget),
    /// Waiting, queued and running tasks cancelled.
    Cancel(BulkTarget),
    /// Finished tasks deleted.
    Delete(BulkTarget),
}

/// The tasks a bulk action covers: ids, or what the filter matches.
#[derive(Debug, Clone, Args)]
pub struct BulkTarget {
    /// These tasks (else every task the filter matches).
    pub ids: Vec<String>,
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// With no ids and no filter: really every task.
    #[arg(long)]
    pub all: bool,
    /// Answer once it has started instead of when it is done.
    #[arg(long)]
    pub no_wait: bool,
}
