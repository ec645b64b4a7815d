//! `weir`: parse flags, set up logging, run the subcommand.

use std::process::ExitCode;

use clap::Parser;
use weir::config::Cli;

/// The proxy and API allocate per request; mimalloc's thread-local free lists
/// beat glibc malloc's arenas there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The config file fills in env vars not already set: flags > env > file.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut task_types = Vec::new();
    if let Some(path) = weir::config_file::config_path(&args) {
        match weir::config_file::read(std::path::Path::new(&path)) {
            Ok(file) => {
                task_types = file.task_types;
                for (var, value) in file.vars {
                    if std::env::var_os(&var).is_none() {
                        // Single-threaded here: nothing else reads the environment yet.
                        std::env::set_var(var, value);
                    }
                }
            }
            Err(e) => {
                eprintln!("weir: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let cli = Cli::parse();
    weir::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weir: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(weir::cmd::run(cli.command, task_types)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: {e:#}");
            ExitCode::FAILURE
        }
    }
}
