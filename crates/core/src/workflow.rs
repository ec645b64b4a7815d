//! Workflows: tasks that run in the order of a graph. Each step is an
//! ordinary task of its type; a step with parents waits (`waiting`) until
//! they have ended, then is queued — decided in the transaction that ends
//! its last parent, so never early and never twice.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{TaskId, TaskState, TaskType, WorkflowId};

/// Most steps one workflow holds unless configured otherwise
/// (`--max-workflow-steps`), those added while it runs included.
pub const DEFAULT_MAX_WORKFLOW_STEPS: usize = 10_000;

/// What a step does when a parent ends other than succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParentFailure {
    /// The step is cancelled, and its dependents after it (the default).
    #[default]
    Cancel,
    /// The step runs once every parent has ended, however.
    Run,
}

impl ParentFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            ParentFailure::Cancel => "cancel",
            ParentFailure::Run => "run",
        }
    }
}

impl FromStr for ParentFailure {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cancel" => Ok(ParentFailure::Cancel),
            "run" => Ok(ParentFailure::Run),
            other => Err(format!("unknown on_parent_failure {other:?}")),
        }
    }
}

/// Where a workflow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Some step can still run.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// Nothing can run any more and not every step succeeded.
    Failed,
    /// Cancelled by request.
    Cancelled,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Succeeded => "succeeded",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }
}

impl FromStr for WorkflowStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => WorkflowStatus::Running,
            "succeeded" => WorkflowStatus::Succeeded,
            "failed" => WorkflowStatus::Failed,
            "cancelled" => WorkflowStatus::Cancelled,
            other => return Err(format!("unknown workflow status {other:?}")),
        })
    }
}

/// A step as a workflow's reader sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowStep {
    pub id: String,
    pub task_id: TaskId,
    #[serde(rename = "type")]
    pub kind: TaskType,
    pub status: TaskState,
    pub depends_on: Vec<String>,
    pub attempts: i32,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub error: Option<String>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
}

/// A workflow and its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Workflow {
    pub id: WorkflowId,
    pub name: Option<String>,
    pub status: WorkflowStatus,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub steps: Vec<WorkflowStep>,
}

/// Which workflows to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct WorkflowListParams {
    pub status: Option<WorkflowStatus>,
    pub name: Option<String>,
    pub tenant: Option<String>,
    /// Only workflows older than this one (ids sort by creation).
    pub before: Option<WorkflowId>,
    pub limit: i64,
}

/// Why a workflow's graph is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("workflow has no steps")]
    Empty,
    #[error("step id {0:?} is used twice")]
    DuplicateStep(String),
    #[error("step {step:?} depends on {missing:?}, which is not a step of this workflow")]
    UnknownDependency { step: String, missing: String },
    #[error("steps depend on each other in a cycle through step {0:?}")]
    Cycle(String),
}

/// Checks a graph given as (step id, parents) pairs, and returns an order of
/// their indexes where every parent comes before its children (Kahn's).
pub fn check_graph<'a>(
    steps: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> Result<Vec<usize>, GraphError> {
    let steps: Vec<(&str, &[String])> = steps.into_iter().collect();
    if steps.is_empty() {
        return Err(GraphError::Empty);
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(steps.len());
    for (i, (id, _)) in steps.iter().enumerate() {
        if index.insert(id, i).is_some() {
            return Err(GraphError::DuplicateStep((*id).to_string()));
        }
    }
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); steps.len()];
    let mut pending: Vec<usize> = vec![0; steps.len()];
    for (i, (id, parents)) in steps.iter().enumerate() {
        let mut seen = HashSet::new();
        for parent in *parents {
            let Some(&p) = index.get(parent.as_str()) else {
                return Err(GraphError::UnknownDependency {
                    step: (*id).to_string(),
                    missing: parent.clone(),
                });
            };
            // A parent named twice is one edge.
            if seen.insert(p) {
                children[p].push(i);
                pending[i] += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..steps.len()).filter(|&i| pending[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let p = order[next];
        next += 1;
        for &c in &children[p] {
            pending[c] -= 1;
            if pending[c] == 0 {
                order.push(c);
            }
        }
    }
    if order.len() < steps.len() {
        // Every step left has a parent left: walk parents from one of them
        // until a step repeats; that step is on a cycle.
        let left = |i: usize| pending[i] > 0;
        let mut at = (0..steps.len()).find(|&i| left(i)).unwrap_or(0);
        let mut visited = HashSet::new();
        while visited.insert(at) {
            at = steps[at]
                .1
                .iter()
                .filter_map(|p| index.get(p.as_str()).copied())
                .find(|&p| left(p))
                .unwrap_or(at);
        }
        return Err(GraphError::Cycle(steps[at].0.to_string()));
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(steps: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        steps
            .iter()
            .map(|(id, deps)| (id.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    fn check(steps: &[(&str, &[&str])]) -> Result<Vec<usize>, GraphError> {
        let g = graph(steps);
        check_graph(g.iter().map(|(id, deps)| (id.as_str(), deps.as_slice())))
    }

    #[test]
    fn parents_come_before_children_in_the_order() {
        let steps: &[(&str, &[&str])] = &[
            ("report", &["a", "b"]),
            ("a", &["fetch"]),
            ("b", &["fetch"]),
            ("fetch", &[]),
        ];
        let order = check(steps).unwrap();
        let pos = |name: &str| {
            order
                .iter()
                .position(|&i| steps[i].0 == name)
                .expect("in order")
        };
        assert_eq!(order.len(), 4);
        assert!(pos("fetch") < pos("a") && pos("fetch") < pos("b"));
        assert!(pos("a") < pos("report") && pos("b") < pos("report"));
    }

    #[test]
    fn a_cycle_is_refused_naming_a_step_on_it() {
        let steps: &[(&str, &[&str])] = &[
            ("start", &[]),
            ("x", &["start", "z"]),
            ("y", &["x"]),
            ("z", &["y"]),
            ("after", &["z"]),
        ];
        match check(steps) {
            Err(GraphError::Cycle(step)) => {
                assert!(["x", "y", "z"].contains(&step.as_str()), "{step}")
            }
            other => panic!("{other:?}"),
        }
        let self_loop: &[(&str, &[&str])] = &[("a", &["a"])];
        assert_eq!(check(self_loop), Err(GraphError::Cycle("a".into())));
    }

    #[test]
    fn unknown_parents_duplicate_ids_and_empty_graphs_are_refused() {
        assert_eq!(
            check(&[("a", &[]), ("b", &["nope"])]),
            Err(GraphError::UnknownDependency {
                step: "b".into(),
                missing: "nope".into()
            })
        );
        assert_eq!(
            check(&[("a", &[]), ("a", &[])]),
            Err(GraphError::DuplicateStep("a".into()))
        );
        assert_eq!(check(&[]), Err(GraphError::Empty));
    }

    #[test]
    fn a_parent_named_twice_is_one_edge() {
        assert_eq!(
            check(&[("a", &[]), ("b", &["a", "a"])]).unwrap(),
            vec![0, 1]
        );
    }
}
