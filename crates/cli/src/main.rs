//! `weir`: parse flags, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use weir::config::Cli;

/// The proxy and API allocate per request; mimalloc's thread-local free lists
/// beat glibc malloc's arenas there. Built with `no_thp` (Cargo.toml): it
/// otherwise asks for transparent huge pages on its arena, and every 2 MiB
/// page touched counts whole — 14 MB of an idle lb's 29 MB, and 88 MB of
/// the 107 MB holding 10,000 idle TLS connections (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything reads the environment, and before any thread starts.
    if let Err(e) = weir::config::env_from_files() {
        eprintln!("weir: {e}");
        return ExitCode::from(2);
    }
    // The config file gives the flags' defaults: flags > env > file.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let file = match weir::config_file::config_path(&args) {
        Some(path) => match weir::config_file::read(std::path::Path::new(&path)) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("weir: {e}");
                return ExitCode::from(2);
            }
        },
        None => weir::config_file::FileConfig::default(),
    };
    if let Some(key) = weir::config_file::unknown_key(&Cli::command(), &file.vars) {
        eprintln!(
            "weir: config file: {key}: no such setting (keys are flag names, e.g. max-in-flight)"
        );
        return ExitCode::from(2);
    }
    let command = weir::config_file::with_file_defaults(Cli::command(), &file.vars);
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let task_types = file.task_types;
    weir::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = weir::cmd::run(cli.command, task_types, cli.check_config, cli.trace);
    match runtime.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}
