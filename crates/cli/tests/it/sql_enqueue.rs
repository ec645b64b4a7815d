//! Enqueueing inside the application's own transaction, from SQL
//! (`weir_enqueue`, migration 0020): a Python application (psycopg) under
//! the least-privilege role writes an order and its task in one
//! transaction — rolled back, neither exists; committed, the task runs
//! once, its worker woken at commit (its polling is off for the test).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use weir_testkit::PgDatabase;

use crate::processes::run_weir as weir;
use crate::processes::WeirProcess;

const APPLICATION: &str = r#"
import json, sys
import psycopg

out = {}
with psycopg.connect(sys.argv[1]) as conn:
    cur = conn.cursor()
    cur.execute("INSERT INTO orders (item) VALUES ('lost')")
    cur.execute("SELECT weir_enqueue('md5', %s::jsonb)", [json.dumps({"string": "lost"})])
    out["rolled_back"] = str(cur.fetchone()[0])
    conn.rollback()

    cur.execute("INSERT INTO orders (item) VALUES ('kept')")
    cur.execute("SELECT weir_enqueue('md5', %s::jsonb, %s::jsonb)",
                [json.dumps({"string": "kept"}),
                 json.dumps({"idempotency_key": "order-1", "priority": 5})])
    out["committed"] = str(cur.fetchone()[0])
    # The same request under the same key: the same task.
    cur.execute("SELECT weir_enqueue('md5', %s::jsonb, %s::jsonb)",
                [json.dumps({"string": "kept"}),
                 json.dumps({"idempotency_key": "order-1", "priority": 5})])
    out["replayed"] = str(cur.fetchone()[0])
    cur.execute("SELECT weir_enqueue_many('md5', %s::jsonb)",
                [json.dumps([{"string": "a"}, {"string": "b"}])])
    out["many"] = [str(i) for i in cur.fetchone()[0]]
    conn.commit()

    # Each refusal fails the caller's transaction, naming the field.
    out["refusals"] = {}
    for name, args in {
        "type": ("md6", {"string": "x"}, {}),
        "option": ("md5", {"string": "x"}, {"qeue": "emails"}),
        "queue": ("md5", {"string": "x"}, {"queue": "no spaces"}),
        "max_attempts": ("md5", {"string": "x"}, {"max_attempts": 0}),
        "key_reused": ("md5", {"string": "other"}, {"idempotency_key": "order-1"}),
    }.items():
        try:
            cur.execute("SELECT weir_enqueue(%s, %s::jsonb, %s::jsonb)",
                        [args[0], json.dumps(args[1]), json.dumps(args[2])])
            out["refusals"][name] = None
        except psycopg.Error as e:
            out["refusals"][name] = [e.sqlstate, str(e).splitlines()[0]]
        conn.rollback()
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_enqueued_in_the_applications_transaction_exists_exactly_when_it_commits() {
    let mut db = PgDatabase::create().await;
    let (owner, app) = db.least_privilege_roles();
    let out = weir(&["migrate", "--database-url", &owner]);
    assert!(out.status.success(), "{out:?}");
    let owner_pool = sqlx::PgPool::connect(&owner).await.unwrap();
    // The application's own table (the owner's default privileges give the
    // app role its rows).
    sqlx::query("CREATE TABLE orders (id serial PRIMARY KEY, item text NOT NULL)")
        .execute(&owner_pool)
        .await
        .unwrap();
    // Polling off: only the NOTIFY at commit can wake the worker in time.
    let (worker, _) = WeirProcess::start(
        &["worker", "--database-url", &app, "--poll-interval", "1h"],
        "running up to",
    );
    // The worker publishes its types at start; SQL refuses a type none has.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM task_types WHERE name = 'md5'")
        .fetch_one(&owner_pool)
        .await
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "the worker never published md5");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // libpq's URL (sqlx adds its own query parameters).
    let libpq_url = app.split('?').next().unwrap();
    let run = Command::new("python3")
        .args(["-c", APPLICATION, libpq_url])
        .output()
        .expect("python3");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out: Value = serde_json::from_slice(&run.stdout).unwrap();
    let id = |v: &Value| v.as_str().expect("an id").to_string();
    let (rolled_back, committed) = (id(&out["rolled_back"]), id(&out["committed"]));
    assert_eq!(out["replayed"], out["committed"], "{out}");
    assert_eq!(out["many"].as_array().unwrap().len(), 2);

    let items: Vec<String> = sqlx::query_scalar("SELECT item FROM orders ORDER BY id")
        .fetch_all(&owner_pool)
        .await
        .unwrap();
    assert_eq!(items, ["kept"]);
    // The committed task runs once, and soon: the commit woke the worker.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (state, attempts, priority) = loop {
        let row: Option<(String, i32, i32)> = sqlx::query_as(
            "SELECT state, attempts, priority FROM tasks_finished WHERE id = $1::uuid",
        )
        .bind(&committed)
        .fetch_optional(&owner_pool)
        .await
        .unwrap();
        if let Some(row) = row {
            break row;
        }
        assert!(Instant::now() < deadline, "the committed task never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((state.as_str(), attempts, priority), ("succeeded", 1, 5));
    for table in ["tasks", "tasks_finished"] {
        let found: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE id = $1::uuid"))
                .bind(&rolled_back)
                .fetch_one(&owner_pool)
                .await
                .unwrap();
        assert_eq!(found, 0, "the rolled-back task is in {table}");
    }

    let refusals = &out["refusals"];
    let refused = |name: &str, words: &[&str]| {
        let r = &refusals[name];
        assert_eq!(r[0], "22023", "{name}: {r}");
        let message = r[1].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{name}: {message:?} lacks {w:?}");
        }
    };
    refused("type", &["type", "md6"]);
    refused("option", &["qeue", "not an option"]);
    refused("queue", &["queue", "1 to 64"]);
    refused("max_attempts", &["max_attempts", "1 to 100"]);
    refused("key_reused", &["idempotency_key", "another request"]);
    worker.terminate();
}
