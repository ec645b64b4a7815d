//! Least-privilege database roles (`deploy/postgres/roles.sql`): `weir
//! migrate` runs as the schema's owner; API nodes and workers connect as a
//! role that may only read and write rows, and start without DDL.

use serde_json::json;
use weir_testkit::PgDatabase;

use crate::processes::run_weir as weir;
use crate::processes::{listening_url, post_json, WeirProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_role_without_ddl_starts_on_a_current_schema_and_names_migrate_otherwise() {
    let mut db = PgDatabase::create().await;
    let (owner, app) = db.least_privilege_roles();

    // Not migrated yet: the app role stops at once with one line that
    // says what to do, instead of a bare `permission denied`.
    let out = weir(&["api", "--database-url", &app, "--check-config"]);
    assert!(out.status.success(), "{out:?}");
    let out = weir(&["api", "--listen", "127.0.0.1:0", "--database-url", &app]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on an empty schema");
    assert!(
        stderr.contains("weir migrate") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    let out = weir(&["migrate", "--database-url", &owner]);
    assert!(out.status.success(), "{out:?}");

    // Current: both roles start with their defaults (migrations on), and
    // a task goes through.
    let (api, line) = WeirProcess::start(
        &["api", "--listen", "127.0.0.1:0", "--database-url", &app],
        "listening on",
    );
    let (worker, _) = WeirProcess::start(&["worker", "--database-url", &app], "running up to");
    let base = listening_url(&line);
    let (status, accepted) = post_json(
        &format!("{base}/hash/md5"),
        &json!({"string": "least privilege"}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["task_id"].as_str().expect("a task id").to_string();
    crate::processes::wait_all_succeeded(&base, &[id]).await;

    // And the app role really may not change the schema.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app)
        .await
        .unwrap();
    let ddl = sqlx::query("ALTER TABLE tasks ADD COLUMN nope int")
        .execute(&mut conn)
        .await;
    assert!(ddl.is_err(), "the app role ran DDL");
    // Yet it makes and drops the day partitions of finished tasks, through
    // the functions that hold the owner's rights, and the partitions it
    // makes are its to write.
    let made: i32 = sqlx::query_scalar(
        "SELECT weir_finished_days_make('succeeded', current_date + 5, current_date + 5)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(made, 1);
    let dropped: i64 = sqlx::query_scalar(
        "SELECT weir_finished_day_drop('succeeded', now() + interval '30 days', 10000)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(dropped, 1, "today's partition, with the md5 task");
    api.terminate();
    worker.terminate();
}
