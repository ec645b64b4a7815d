// The types of weir's answers and requests. Every one comes from
// `generated.ts`, which `scripts/generate.ts` writes from weir's
// /openapi.json (the tests fail when it no longer matches); the names
// below only narrow or rename them for the client's signatures.

import type { SubmitStep, SubmitTask, TaskState, WorkflowStatus } from "./generated.js";

export type * from "./generated.js";
export type { Operation, Success, ResponseInfo } from "./http.js";

/** A task's state once nothing more happens to it. */
export type FinishedTaskState = Extract<TaskState, "succeeded" | "dead" | "cancelled">;

/** A workflow's status once nothing more runs. */
export type FinishedWorkflowStatus = Exclude<WorkflowStatus, "running">;

/** `POST /tasks` options besides type and input (the API's own field names). */
export type SubmitOptions = Omit<SubmitTask, "type" | "input">;

/**
 * A workflow step's options besides its id, type, input and parents:
 * `queue`, `priority`, `max_attempts`, `timeout`, `retry_backoff`,
 * `concurrency_key`, `run_at`, `on_parent_failure`, `with_parent_results`.
 */
export type StepOptions = Omit<SubmitStep, "id" | "type" | "input" | "depends_on">;

/** The hashes `POST /hash/{kind}` computes. */
export type HashKind = "md5" | "sha256" | "argon2";
