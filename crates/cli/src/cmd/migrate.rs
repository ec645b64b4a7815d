//! `weir migrate`: create or upgrade the schema, then exit.

use anyhow::Context;

use crate::config::StoreArgs;

pub async fn run(args: StoreArgs, check: bool) -> anyhow::Result<()> {
    let mut options = args.options(None)?;
    if check {
        return super::checked("migrate");
    }
    options.migrate = true;
    let store = weir_store_sql::open_shared(&options)
        .await
        .with_context(|| format!("migrating {}", options.database_url))?;
    println!("weir: {} schema is up to date", store.backend());
    Ok(())
}
