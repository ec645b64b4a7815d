//! The ids tasks and workflows are known by (a workflow's step is a task,
//! and a task names its workflow: the two types live apart from both).

time_ordered_id!(
    /// A task's id: a UUIDv7, so ids sort by creation time and index well.
    TaskId
);

time_ordered_id!(
    /// A workflow's id: a UUIDv7, like a task's.
    WorkflowId
);

time_ordered_id!(
    /// A bulk action's id: a UUIDv7. A bulk action over a filter covers the
    /// tasks created before it, whose ids sort below it.
    BulkId
);
