//! Batches: a running step adds steps to its own workflow, and the steps
//! after it wait for it and for everything it added — transitively, fenced
//! by its lease, stored once however often a retried attempt adds them.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use weir_core::*;

use super::insert_params;
use super::workflows::{claim_all, ids, insert, reread, step, succeed, workflow, C};

/// Steps of type md5 named `ids`, each with the parents given.
fn new_steps(specs: &[(&str, &[&str])]) -> Vec<NewStep> {
    let now = Utc::now();
    specs
        .iter()
        .map(|(id, parents)| {
            let mut task = insert_params(Builtin::Md5, id, now);
            task.cache_key = None;
            NewStep {
                step_id: id.to_string(),
                task,
                depends_on: parents.iter().map(|p| p.to_string()).collect(),
                on_parent_failure: C,
                with_parent_results: false,
            }
        })
        .collect()
}

fn adding(by: &ClaimedTask, steps: Vec<NewStep>) -> NewSteps {
    NewSteps {
        adder: by.id,
        lease_token: by.lease_token,
        now: Utc::now(),
        steps,
        max_total: DEFAULT_MAX_WORKFLOW_STEPS,
    }
}

fn added(outcome: StepsAdded) -> Vec<(String, TaskId)> {
    match outcome {
        StepsAdded::Added { steps, .. } => steps,
        other => panic!("expected Added, got {other:?}"),
    }
}

pub async fn a_step_after_a_batch_waits_for_everything_the_batch_added(store: Arc<dyn Store>) {
    let w = insert(
        &store,
        workflow(
            "batch",
            &[("split", &[], C, false), ("report", &["split"], C, false)],
            Utc::now(),
        ),
    )
    .await;
    let claimed = claim_all(&store, &w).await;
    assert_eq!(ids(&claimed), HashSet::from(["split"]));
    let split = claimed[0].1.clone();

    // A stale lease adds nothing.
    let mut stale = adding(&split, new_steps(&[("a", &[])]));
    stale.lease_token += 1;
    assert_eq!(
        store.workflow_add_steps(stale).await.unwrap(),
        StepsAdded::LeaseLost
    );
    let batch = new_steps(&[("a", &[]), ("b", &[]), ("c", &["a"])]);
    let first = added(
        store
            .workflow_add_steps(adding(&split, batch.clone()))
            .await
            .unwrap(),
    );
    assert_eq!(
        first.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    // The same batch again (a retried attempt) stores nothing more.
    assert_eq!(
        store
            .workflow_add_steps(adding(&split, batch))
            .await
            .unwrap(),
        StepsAdded::Replayed {
            workflow: w.id,
            steps: first.clone()
        }
    );
    // Ids already taken, whole or in part, are refused.
    for clash in [&[("split", &[][..])][..], &[("a", &[]), ("d", &[])]] {
        let outcome = store
            .workflow_add_steps(adding(&split, new_steps(clash)))
            .await
            .unwrap();
        assert!(
            matches!(outcome, StepsAdded::StepExists(_)),
            "{clash:?}: {outcome:?}"
        );
    }
    let w = reread(&store, &w).await;
    assert_eq!(w.steps.len(), 5, "split, report and the batch of three");
    assert_eq!(
        step(&w, "report").depends_on,
        ["split", "a", "b", "c"].map(String::from)
    );
    assert_eq!(step(&w, "c").status, TaskState::Waiting);
    let a_task = store.task_get(first[0].1).await.unwrap().unwrap();
    assert_eq!(a_task.workflow_id, Some(w.id));
    assert_eq!(a_task.step_id.as_deref(), Some("a"));

    // The adder ends first: the report still waits for the batch.
    succeed(&store, &split, json!({"split": true})).await;
    // A finished step still names its workflow and step.
    let split_task = store.task_get(split.id).await.unwrap().unwrap();
    assert_eq!(split_task.state, TaskState::Succeeded);
    assert_eq!(
        (split_task.workflow_id, split_task.step_id.as_deref()),
        (Some(w.id), Some("split"))
    );
    let claimed = claim_all(&store, &w).await;
    assert_eq!(ids(&claimed), HashSet::from(["a", "b"]));
    let (a, b) = (claimed[0].1.clone(), claimed[1].1.clone());
    let (a, b) = if claimed[0].0 == "a" { (a, b) } else { (b, a) };
    // An added step adds more: every step after it (c, the report) waits
    // for those too.
    added(
        store
            .workflow_add_steps(adding(&a, new_steps(&[("a1", &[])])))
            .await
            .unwrap(),
    );
    succeed(&store, &a, json!(1)).await;
    succeed(&store, &b, json!(2)).await;
    let w = reread(&store, &w).await;
    for next in ["a1", "c"] {
        let w = reread(&store, &w).await;
        let claimed = claim_all(&store, &w).await;
        assert_eq!(ids(&claimed), HashSet::from([next]));
        assert_eq!(step(&w, "report").status, TaskState::Waiting);
        succeed(&store, &claimed[0].1, json!(3)).await;
    }
    let w = reread(&store, &w).await;
    assert_eq!(step(&w, "c").depends_on, ["a", "a1"].map(String::from));
    let claimed = claim_all(&store, &w).await;
    assert_eq!(ids(&claimed), HashSet::from(["report"]));
    succeed(&store, &claimed[0].1, json!("done")).await;
    let w = reread(&store, &w).await;
    assert_eq!(w.status, WorkflowStatus::Succeeded);
    assert_eq!(w.steps.len(), 6);
}

pub async fn adding_steps_is_refused_past_the_limit_and_off_a_workflow(store: Arc<dyn Store>) {
    let w = insert(
        &store,
        workflow(
            "small",
            &[("only", &[], C, false), ("after", &["only"], C, false)],
            Utc::now(),
        ),
    )
    .await;
    let only = claim_all(&store, &w).await.remove(0).1;
    let mut three = adding(&only, new_steps(&[("x", &[]), ("y", &[]), ("z", &[])]));
    three.max_total = 4;
    assert_eq!(
        store.workflow_add_steps(three).await.unwrap(),
        StepsAdded::TooMany { total: 5, max: 4 }
    );
    // Nothing of the refused batch stayed.
    let w = reread(&store, &w).await;
    assert_eq!(w.steps.len(), 2);
    assert_eq!(step(&w, "after").depends_on, ["only".to_string()]);
    succeed(&store, &only, json!(1)).await;
    let after = claim_all(&store, &w).await;
    assert_eq!(ids(&after), HashSet::from(["after"]));

    // A plain task is no step: it adds nothing.
    let plain = insert_params(Builtin::Md5, "plain", Utc::now());
    store.task_insert(plain).await.unwrap();
    let claimed = store
        .task_claim(super::claim("w", 10, Utc::now()))
        .await
        .unwrap();
    let plain = claimed
        .iter()
        .find(|t| !after.iter().any(|(_, a)| a.id == t.id))
        .expect("the plain task");
    assert_eq!(
        store
            .workflow_add_steps(adding(plain, new_steps(&[("q", &[])])))
            .await
            .unwrap(),
        StepsAdded::NotAStep
    );
    let task = store.task_get(plain.id).await.unwrap().unwrap();
    assert_eq!((task.workflow_id, task.step_id), (None, None));
}
