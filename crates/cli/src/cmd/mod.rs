//! One module per subcommand.

mod api;
mod bench;
mod burndown;
mod lb;
pub mod load;
mod migrate;
mod queues;
mod tasks;
mod up;
mod worker;

use weir_core::TaskTypeConfig;

use crate::config::Command;

/// Runs `command`; `task_types` are the config file's `[task_types.NAME]` tables.
/// With `check`, a role checks its configuration and returns before it
/// binds, connects or starts anything.
pub async fn run(
    command: Command,
    task_types: Vec<(String, TaskTypeConfig)>,
    check: bool,
    trace: crate::config::TraceArgs,
) -> anyhow::Result<()> {
    let service = match &command {
        Command::Up(_) => "weir",
        Command::Lb(_) => "weir-lb",
        Command::Api(_) => "weir-api",
        Command::Worker(_) => "weir-worker",
        _ => "weir-cli",
    };
    let tracer = weir_trace::Tracer::new(&weir_trace::Settings {
        endpoint: trace.otlp_endpoint.filter(|e| !e.is_empty()),
        sample_ratio: trace.trace_sample_ratio,
        service: service.to_owned(),
    })?;
    let exporting = tracer.is_exporting();
    weir_trace::install(tracer);
    let result = run_command(command, task_types, check).await;
    if exporting {
        // What is queued goes out before the process ends.
        let _ = tokio::task::spawn_blocking(|| weir_trace::tracer().shutdown()).await;
    }
    result
}

async fn run_command(
    command: Command,
    task_types: Vec<(String, TaskTypeConfig)>,
    check: bool,
) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(*args, &task_types, check).await,
        Command::Lb(args) => lb::run(*args, check).await,
        Command::Api(args) => api::run(args, &task_types, check).await,
        Command::Worker(args) => worker::run(args, &task_types, check).await,
        Command::Migrate(args) => migrate::run(args, check).await,
        Command::Health(args) => health(args).await,
        Command::Bench(args) => match args.command {
            Some(command) => bench::run(command).await,
            None => load::run(args.load).await,
        },
        Command::Status(args) => status(args).await,
        Command::Queues(args) => queues::run(args).await,
        Command::Tasks(args) => tasks::run(args).await,
        Command::ApiKey(args) => {
            let (key, entry) = weir_api::api_keys::ApiKeys::generate(
                &args.name,
                &args.scopes,
                args.tenant.as_deref(),
            );
            println!("# the key, for the client (shown once; only its hash is kept):");
            println!("# {key}");
            print!("{entry}");
            Ok(())
        }
    }
}

/// The configuration passed its checks: say so, start nothing.
fn checked(role: &str) -> anyhow::Result<()> {
    println!("weir {role}: configuration ok");
    Ok(())
}

async fn health(args: crate::config::HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .build()
        .map_err(|e| anyhow::anyhow!("building the client: {e}"))?;
    let resp = client
        .get(&args.url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.url))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "{}: {status}: {}",
        args.url,
        body.chars().take(300).collect::<String>()
    );
    Ok(())
}

async fn status(args: crate::config::StatusArgs) -> anyhow::Result<()> {
    use crate::status::{collect_with_key, Source};
    let source = match &args.database_url {
        Some(url) => {
            let mut options = weir_store_sql::StoreOptions::new(url.clone());
            // Looking must never change the schema.
            options.migrate = false;
            options.max_connections = 2;
            let store = weir_store_sql::open_shared(&options)
                .await
                .map_err(|e| anyhow::anyhow!("opening {url}: {e}"))?;
            Source::Store(store)
        }
        None => Source::Lb(args.target.trim_end_matches('/').to_string()),
    };
    let Some(every) = args.watch else {
        let status = collect_with_key(&source, args.sample, args.api_key.as_deref()).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status)?);
        } else {
            print!("{}", crate::status::render(&status));
        }
        return Ok(());
    };
    let stop = crate::signal::shutdown();
    tokio::pin!(stop);
    loop {
        // Clear the screen and redraw; an unreachable cluster is shown, not fatal.
        let shown = match collect_with_key(&source, args.sample, args.api_key.as_deref()).await {
            Ok(s) if args.json => serde_json::to_string(&s)?,
            Ok(s) => crate::status::render(&s),
            Err(e) => format!("weir status: {e:#}\n"),
        };
        print!("\x1b[2J\x1b[H{shown}");
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}
