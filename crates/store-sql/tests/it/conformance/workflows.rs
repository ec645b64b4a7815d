//! Workflows: a step is claimable exactly when its parents have ended, a
//! failed parent cancels its dependents (or not, under `run`), a retried
//! step brings them back, and a workflow's status follows its steps.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use weir_core::*;

use super::{claim, insert_params};

/// A step of type md5: (id, parents, on_parent_failure, with_parent_results).
pub(super) type Spec<'a> = (&'a str, &'a [&'a str], ParentFailure, bool);

pub(super) fn workflow(name: &str, steps: &[Spec<'_>], now: DateTime<Utc>) -> NewWorkflow {
    NewWorkflow {
        id: WorkflowId::new(),
        name: Some(name.into()),
        tenant: None,
        now,
        steps: steps
            .iter()
            .map(|(id, parents, policy, with)| {
                let mut task = insert_params(Builtin::Md5, id, now);
                // A step is its own task: never folded into an equal input.
                task.cache_key = None;
                NewStep {
                    step_id: id.to_string(),
                    task,
                    depends_on: parents.iter().map(|p| p.to_string()).collect(),
                    on_parent_failure: *policy,
                    with_parent_results: *with,
                }
            })
            .collect(),
    }
}

pub(super) const C: ParentFailure = ParentFailure::Cancel;

pub(super) async fn insert(store: &Arc<dyn Store>, w: NewWorkflow) -> Workflow {
    let id = w.id;
    store.workflow_insert(w).await.unwrap();
    store.workflow_get(id).await.unwrap().unwrap()
}

pub(super) fn step<'a>(w: &'a Workflow, id: &str) -> &'a WorkflowStep {
    w.steps.iter().find(|s| s.id == id).expect("step")
}

/// Claims everything claimable now; those of `w`, by step id.
pub(super) async fn claim_all(store: &Arc<dyn Store>, w: &Workflow) -> Vec<(String, ClaimedTask)> {
    let claimed = store.task_claim(claim("w", 100, Utc::now())).await.unwrap();
    claimed
        .into_iter()
        .filter_map(|t| {
            let s = w.steps.iter().find(|s| s.task_id == t.id)?;
            Some((s.id.clone(), t))
        })
        .collect()
}

pub(super) fn ids(claimed: &[(String, ClaimedTask)]) -> HashSet<&str> {
    claimed.iter().map(|(s, _)| s.as_str()).collect()
}

pub(super) async fn succeed(store: &Arc<dyn Store>, t: &ClaimedTask, result: Value) {
    let done = store
        .task_complete_many(&[TaskCompletion {
            id: t.id,
            lease_token: t.lease_token,
            outcome: TaskOutcome::Succeeded {
                result,
                cache: None,
            },
            now: Utc::now(),
        }])
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionOutcome::Applied]);
}

async fn kill(store: &Arc<dyn Store>, t: &ClaimedTask) {
    let done = store
        .task_complete_many(&[TaskCompletion {
            id: t.id,
            lease_token: t.lease_token,
            outcome: TaskOutcome::Failed {
                error: "boom".into(),
                retry_at: None,
            },
            now: Utc::now(),
        }])
        .await
        .unwrap();
    assert_eq!(done, vec![CompletionOutcome::Applied]);
}

pub(super) async fn reread(store: &Arc<dyn Store>, w: &Workflow) -> Workflow {
    store.workflow_get(w.id).await.unwrap().unwrap()
}

pub async fn a_chain_runs_step_by_step_and_the_workflow_succeeds(store: Arc<dyn Store>) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "chain",
            &[
                ("fetch", &[], C, false),
                ("transform", &["fetch"], C, false),
                ("store", &["transform"], C, false),
            ],
            now,
        ),
    )
    .await;
    assert_eq!(w.status, WorkflowStatus::Running);
    assert_eq!(w.name.as_deref(), Some("chain"));
    assert_eq!(step(&w, "fetch").status, TaskState::Queued);
    assert_eq!(step(&w, "transform").status, TaskState::Waiting);
    assert_eq!(step(&w, "store").depends_on, vec!["transform".to_string()]);
    for name in ["fetch", "transform", "store"] {
        let claimed = claim_all(&store, &w).await;
        assert_eq!(
            ids(&claimed),
            HashSet::from([name]),
            "only {name} is claimable"
        );
        succeed(&store, &claimed[0].1, json!({"done": name})).await;
    }
    assert!(claim_all(&store, &w).await.is_empty());
    let w = reread(&store, &w).await;
    assert_eq!(w.status, WorkflowStatus::Succeeded);
    assert!(w.finished_at.is_some());
    assert_eq!(step(&w, "store").result, Some(json!({"done": "store"})));
    // Steps are tasks like any other.
    let task = store.task_get(step(&w, "transform").task_id).await.unwrap();
    assert_eq!(task.unwrap().state, TaskState::Succeeded);
}

/// One completion batch holding plain tasks and steps (PostgreSQL records
/// the plain ones in one statement and the steps in a transaction with
/// their workflows' bookkeeping): each is applied once, stale ones of
/// either kind are refused, and the workflow moves on.
pub async fn a_batch_of_plain_tasks_and_steps_ends_each_and_moves_the_workflow_on(
    store: Arc<dyn Store>,
) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "mixed",
            &[
                ("first", &[], C, false),
                ("side", &[], C, false),
                ("second", &["first"], C, false),
            ],
            now,
        ),
    )
    .await;
    let plain = store
        .task_insert(insert_params(Builtin::Md5, "plain", now))
        .await
        .unwrap();
    let stale_plain = store
        .task_insert(insert_params(Builtin::Md5, "stale plain", now))
        .await
        .unwrap();
    let claimed = store.task_claim(claim("w", 10, now)).await.unwrap();
    let find = |id: TaskId| claimed.iter().find(|t| t.id == id).expect("claimed");
    let first = find(step(&w, "first").task_id);
    let side = find(step(&w, "side").task_id);
    let stale = |t: &ClaimedTask| {
        let mut c = super::success(t, now, None);
        c.lease_token += 1;
        c
    };
    let batch = [
        super::success(find(plain.id), now, None),
        stale(find(stale_plain.id)),
        super::success(first, now, None),
        stale(side),
    ];
    assert_eq!(
        store.task_complete_many(&batch).await.unwrap(),
        vec![
            CompletionOutcome::Applied,
            CompletionOutcome::LeaseLost,
            CompletionOutcome::Applied,
            CompletionOutcome::LeaseLost,
        ]
    );
    let state = |t: Option<Task>| t.expect("task").state;
    for (id, expected) in [
        (plain.id, TaskState::Succeeded),
        (stale_plain.id, TaskState::Running),
        (side.id, TaskState::Running),
    ] {
        assert_eq!(state(store.task_get(id).await.unwrap()), expected);
    }
    let claimed = claim_all(&store, &w).await;
    assert_eq!(
        ids(&claimed),
        HashSet::from(["second"]),
        "the chain moved on"
    );
    // The same completion again: the step's lease is spent.
    assert_eq!(
        store
            .task_complete_many(&[super::success(first, now, None)])
            .await
            .unwrap(),
        vec![CompletionOutcome::LeaseLost]
    );
    succeed(&store, &claimed[0].1, json!({"done": "second"})).await;
    assert_eq!(reread(&store, &w).await.status, WorkflowStatus::Running);
    succeed(&store, side, json!({"done": "side"})).await;
    assert_eq!(reread(&store, &w).await.status, WorkflowStatus::Succeeded);
}

pub async fn fan_in_waits_for_every_parent_and_receives_their_results(store: Arc<dyn Store>) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "fan",
            &[
                ("split", &[], C, false),
                ("a", &["split"], C, false),
                ("b", &["split"], C, false),
                ("c", &["split"], C, false),
                ("report", &["a", "b", "c"], C, true),
            ],
            now,
        ),
    )
    .await;
    let split = claim_all(&store, &w).await;
    succeed(&store, &split[0].1, json!({"parts": 3})).await;
    let parts = claim_all(&store, &w).await;
    assert_eq!(ids(&parts), HashSet::from(["a", "b", "c"]));
    for (i, (name, t)) in parts.iter().enumerate() {
        assert!(
            claim_all(&store, &w).await.is_empty(),
            "report before {name}"
        );
        succeed(&store, t, json!({ "part": i })).await;
    }
    let report = claim_all(&store, &w).await;
    assert_eq!(ids(&report), HashSet::from(["report"]));
    let parents = &report[0].1.input["parents"];
    for (i, (name, _)) in parts.iter().enumerate() {
        assert_eq!(parents[name.as_str()], json!({ "part": i }), "{parents}");
    }
    assert_eq!(report[0].1.input["string"], "report", "its own input kept");
    succeed(&store, &report[0].1, json!({})).await;
    assert_eq!(reread(&store, &w).await.status, WorkflowStatus::Succeeded);
}

pub async fn parents_ending_at_once_queue_their_child_exactly_once(store: Arc<dyn Store>) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "race",
            &[
                ("l", &[], C, false),
                ("r", &[], C, false),
                ("join", &["l", "r"], C, false),
            ],
            now,
        ),
    )
    .await;
    let both = claim_all(&store, &w).await;
    assert_eq!(both.len(), 2);
    // Each completion in its own transaction, at the same time.
    let finish = |t: ClaimedTask| {
        let store = store.clone();
        tokio::spawn(async move { succeed(&store, &t, json!(1)).await })
    };
    let (l, r) = (finish(both[0].1.clone()), finish(both[1].1.clone()));
    l.await.unwrap();
    r.await.unwrap();
    let join = claim_all(&store, &w).await;
    assert_eq!(ids(&join), HashSet::from(["join"]));
    assert!(claim_all(&store, &w).await.is_empty());
}

pub async fn a_dead_step_cancels_its_dependents_and_a_retry_brings_them_back(
    store: Arc<dyn Store>,
) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "charge-then-mail",
            &[
                ("charge", &[], C, false),
                ("mail", &["charge"], C, false),
                ("archive", &["mail"], C, false),
                ("audit", &[], C, false),
            ],
            now,
        ),
    )
    .await;
    let first = claim_all(&store, &w).await;
    assert_eq!(ids(&first), HashSet::from(["charge", "audit"]));
    let charge = &first.iter().find(|(s, _)| s == "charge").unwrap().1;
    let audit = &first.iter().find(|(s, _)| s == "audit").unwrap().1;
    kill(&store, charge).await;
    let after = reread(&store, &w).await;
    for name in ["mail", "archive"] {
        let s = step(&after, name);
        assert_eq!(s.status, TaskState::Cancelled, "{name}");
    }
    assert!(step(&after, "mail")
        .error
        .as_deref()
        .unwrap()
        .contains("charge"));
    assert!(step(&after, "archive")
        .error
        .as_deref()
        .unwrap()
        .contains("mail"));
    // The other branch still runs; the workflow fails once nothing can.
    assert_eq!(after.status, WorkflowStatus::Running);
    succeed(&store, audit, json!({})).await;
    let failed = reread(&store, &w).await;
    assert_eq!(failed.status, WorkflowStatus::Failed);
    assert!(failed.finished_at.is_some());

    // Retrying the dead step: its dependents wait again, the workflow runs.
    let retried = store
        .task_retry(step(&w, "charge").task_id, Utc::now())
        .await
        .unwrap();
    assert!(matches!(retried, TaskChange::Changed(_)));
    let back = reread(&store, &w).await;
    assert_eq!(back.status, WorkflowStatus::Running);
    assert_eq!(back.finished_at, None);
    assert_eq!(step(&back, "mail").status, TaskState::Waiting);
    assert_eq!(step(&back, "archive").status, TaskState::Waiting);
    for name in ["charge", "mail", "archive"] {
        let claimed = claim_all(&store, &w).await;
        assert_eq!(ids(&claimed), HashSet::from([name]));
        succeed(&store, &claimed[0].1, json!({})).await;
    }
    assert_eq!(reread(&store, &w).await.status, WorkflowStatus::Succeeded);
}

pub async fn under_run_a_step_runs_after_a_failed_parent_and_sees_its_error(store: Arc<dyn Store>) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "cleanup",
            &[
                ("work", &[], C, false),
                ("cleanup", &["work"], ParentFailure::Run, true),
            ],
            now,
        ),
    )
    .await;
    let work = claim_all(&store, &w).await;
    kill(&store, &work[0].1).await;
    let cleanup = claim_all(&store, &w).await;
    assert_eq!(ids(&cleanup), HashSet::from(["cleanup"]));
    assert_eq!(
        cleanup[0].1.input["parents"]["work"]["error"], "boom",
        "{}",
        cleanup[0].1.input
    );
    succeed(&store, &cleanup[0].1, json!({})).await;
    // A step died: the workflow failed, though every other step ran.
    assert_eq!(reread(&store, &w).await.status, WorkflowStatus::Failed);
}

pub async fn a_lease_lost_on_the_last_attempt_fails_the_step_and_cancels_dependents(
    store: Arc<dyn Store>,
) {
    let now = Utc::now();
    let mut spec = workflow(
        "rescued",
        &[("a", &[], C, false), ("b", &["a"], C, false)],
        now,
    );
    spec.steps[0].task.max_attempts = 1;
    let w = insert(&store, spec).await;
    assert_eq!(claim_all(&store, &w).await.len(), 1);
    let late = Utc::now() + chrono::Duration::seconds(60);
    store
        .task_rescue_expired(TaskRescueParams { now: late })
        .await
        .unwrap();
    let w = reread(&store, &w).await;
    assert_eq!(step(&w, "a").status, TaskState::Dead);
    assert_eq!(step(&w, "b").status, TaskState::Cancelled);
    assert_eq!(w.status, WorkflowStatus::Failed);
}

pub async fn cancelling_a_workflow_stops_every_step_and_fences_running_ones(store: Arc<dyn Store>) {
    let now = Utc::now();
    let w = insert(
        &store,
        workflow(
            "stop-me",
            &[
                ("running", &[], C, false),
                ("waiting", &["running"], ParentFailure::Run, false),
            ],
            now,
        ),
    )
    .await;
    let running = claim_all(&store, &w).await;
    let queued = insert(&store, workflow("other", &[("x", &[], C, false)], now)).await;
    let cancelled = store
        .workflow_cancel(w.id, Utc::now())
        .await
        .unwrap()
        .expect("found");
    assert_eq!(cancelled.status, WorkflowStatus::Cancelled);
    for s in &cancelled.steps {
        assert_eq!(s.status, TaskState::Cancelled, "{}", s.id);
    }
    // The running attempt's report is refused, and nothing runs after it.
    let late = store
        .task_complete_many(&[TaskCompletion {
            id: running[0].1.id,
            lease_token: running[0].1.lease_token,
            outcome: TaskOutcome::Succeeded {
                result: json!({}),
                cache: None,
            },
            now: Utc::now(),
        }])
        .await
        .unwrap();
    assert_eq!(late, vec![CompletionOutcome::LeaseLost]);
    let rest = claim_all(&store, &queued).await;
    assert_eq!(
        ids(&rest),
        HashSet::from(["x"]),
        "another workflow is untouched"
    );
    assert!(store
        .workflow_cancel(WorkflowId::new(), Utc::now())
        .await
        .unwrap()
        .is_none());
}

pub async fn workflows_list_newest_first_by_status_and_name(store: Arc<dyn Store>) {
    let now = Utc::now();
    let a = insert(&store, workflow("nightly", &[("s", &[], C, false)], now)).await;
    let b = insert(&store, workflow("nightly", &[("s", &[], C, false)], now)).await;
    let c = insert(&store, workflow("hourly", &[("s", &[], C, false)], now)).await;
    store.workflow_cancel(c.id, Utc::now()).await.unwrap();
    let list = |status, name: Option<&str>, before| {
        let store = store.clone();
        let name = name.map(str::to_string);
        async move {
            store
                .workflow_list(WorkflowListParams {
                    status,
                    name,
                    tenant: None,
                    before,
                    limit: 10,
                })
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, None, None).await, vec![c.id, b.id, a.id]);
    assert_eq!(list(None, Some("nightly"), None).await, vec![b.id, a.id]);
    assert_eq!(
        list(Some(WorkflowStatus::Cancelled), None, None).await,
        vec![c.id]
    );
    assert_eq!(list(None, None, Some(b.id)).await, vec![a.id]);
}

pub async fn finished_workflows_are_pruned_with_their_graphs(store: Arc<dyn Store>) {
    let now = Utc::now();
    let done = insert(&store, workflow("old", &[("s", &[], C, false)], now)).await;
    let live = insert(
        &store,
        workflow(
            "live",
            &[("a", &[], C, false), ("b", &["a"], C, false)],
            now,
        ),
    )
    .await;
    // Both roots at once: the old workflow's only step, the live one's first.
    let roots = store.task_claim(claim("w", 100, Utc::now())).await.unwrap();
    assert_eq!(roots.len(), 2);
    for t in &roots {
        succeed(&store, t, json!({"kept": true})).await;
    }
    let later = Utc::now() + chrono::Duration::seconds(1);
    let report = store
        .maintenance_prune(MaintenancePruneParams {
            finished_before: later,
            dead_before: None,
            cancelled_before: None,
            now: later,
            workers_silent_since: now,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(report.workflows_deleted, 1);
    assert!(store.workflow_get(done.id).await.unwrap().is_none());
    // A workflow still running stays, whatever its age, and so do its
    // finished steps: their results are still to be read.
    let live = store.workflow_get(live.id).await.unwrap().unwrap();
    assert_eq!(live.steps.len(), 2);
    assert_eq!(step(&live, "a").result, Some(json!({"kept": true})));
}
