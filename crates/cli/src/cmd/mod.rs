//! One module per subcommand.

mod api;
mod bench;
mod burndown;
mod lb;
mod migrate;
mod up;
mod worker;

use crate::config::Command;

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(*args).await,
        Command::Lb(args) => lb::run(args).await,
        Command::Api(args) => api::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Status(args) => {
            let status = crate::status::collect(&args.target).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", crate::status::render(&status));
            }
            Ok(())
        }
    }
}
