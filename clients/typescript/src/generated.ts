// Generated from weir's /openapi.json by scripts/generate.ts (`npm run generate`).
// Do not edit: the tests fail when this differs from what the running weir serves.

/** A JSON object (`{"type": "object"}` without declared properties). */
export type JsonObject = { [key: string]: unknown };

/** Steps a running step adds to its own workflow. */
export interface AddSteps {
    /**
     * Its attempt's lease token (a claim gives it; a Rust handler has it
     * on its `Job`).
     */
    lease_token: number;
    /** As for `POST /workflows`; `depends_on` names steps of this list. */
    steps: SubmitStep[];
    /** The running step adding them. */
    task_id: TaskId;
}

export interface AttemptAnswer {
    /** Heartbeats: until when the lease now holds. */
    lease_expires_at?: string | null;
    status: TaskState;
    task_id: TaskId;
}

/** One failed attempt, as kept on its task. */
export interface AttemptError {
    at: string;
    attempt: number;
    error: string;
    worker_id?: string | null;
}

/**
 * One recorded action. Never holds a secret: an actor is a key's name,
 * never the key.
 */
export interface AuditEntry {
    /** e.g. `task.retry`, `tasks.bulk`, `queue.pause`. */
    action: string;
    /** An API key's name, or `admin` when the API has no keys. */
    actor: string;
    at: string;
    /** The client's address (the first `X-Forwarded-For` hop behind a proxy). */
    client_ip?: string | null;
    /** How many tasks it covered, where that is known. */
    count?: number | null;
    /** The filter, limits or ids it was given. */
    detail?: unknown;
    /** Increasing; 0 before it is stored. */
    id: number;
    /** What it acted on: a task, queue or workflow id, or a bulk action's id. */
    target?: string | null;
    /** The key's tenant, if it has one. */
    tenant?: string | null;
}

/** `GET /audit`. */
export interface AuditPage {
    entries: AuditEntry[];
    /** Pass as `cursor` for the next page; absent on the last one. */
    next_cursor?: number | null;
}

/** What a bulk action does to each task it covers. */
export type BulkAction = "retry" | "cancel" | "delete";

/**
 * A bulk action's id: a UUIDv7. A bulk action over a filter covers the
 * tasks created before it, whose ids sort below it.
 */
export type BulkId = string;

/** A bulk action and how far it has come. */
export interface BulkJob {
    action: BulkAction;
    actor: string;
    /** Tasks it changed. */
    changed: number;
    created_at: string;
    filter: TaskFilter;
    finished_at?: string | null;
    id: BulkId;
    /** How many ids it was given (absent: it covers a filter). */
    ids?: number | null;
    /** Tasks looked at so far. */
    processed: number;
    /**
     * Tasks looked at but left as they were (not in a state it acts on,
     * or another tenant's).
     */
    skipped: number;
    /** `running` until every covered task has been looked at, then `done`. */
    status: string;
}

/** `GET /tasks/bulk`. */
export interface BulkList {
    bulk_actions: BulkView[];
}

/** `POST /tasks/bulk`. */
export interface BulkRequest {
    /**
     * `retry` (dead tasks), `cancel` (waiting, queued, running) or
     * `delete` (finished tasks).
     */
    action: BulkAction;
    /** Every task it matches, created before the request (`{}`: every task). */
    filter?: null | TaskFilter;
    /** These tasks; or give `filter`. */
    ids?: string[] | null;
}

/** A bulk action and how far it has come. */
export type BulkView = BulkJob & {
    bulk_id: BulkId;
};

/** One cache entry as `/cache/stats` shows it. */
export interface CacheEntryStats {
    access_count: number;
    created_at: string;
    expires_at: string;
    key: string;
    last_accessed_at?: string | null;
}

/** `GET /cache/stats`. */
export interface CacheStatsView {
    entries: number;
    /** hits / (hits + misses); absent before the first lookup. */
    hit_ratio?: number | null;
    hits: number;
    misses: number;
    /** The most read entries. */
    top: CacheEntryStats[];
}

/** A cacheable submission answered from the shared cache. */
export interface CachedResult {
    result: JsonObject;
    /** Always `cache`. */
    source: string;
    type: TaskType;
}

export interface ClaimAnswer {
    tasks: ClaimedTaskView[];
}

export interface ClaimRequest {
    failed?: number | null;
    /** The lease each task holds until a heartbeat (1 s to 1 h; default 30 s). */
    lease?: string | null;
    /** Most tasks to take (1 to 100, default 1). */
    max?: number | null;
    /** The worker's own counters and start, shown in `GET /workers`. */
    processed?: number | null;
    /** Only these queues (default: every queue). */
    queues?: string[] | null;
    started_at?: string | null;
    /** The types this worker runs (each must be registered). */
    types: string[];
    /** How long to wait for work when none is due (up to 30 s; default 0). */
    wait?: string | null;
}

export interface ClaimedTaskView {
    /** This attempt's number, from 1. */
    attempt: number;
    id: TaskId;
    input: JsonObject;
    lease_expires_at: string;
    /** Present it with every heartbeat, completion and failure. */
    lease_token: number;
    max_attempts: number;
    step_id?: string | null;
    /** The attempt's time limit: stop and fail it past this. */
    timeout_ms: number;
    /**
     * The W3C trace context to continue (the span that queued the task):
     * send it on as the `traceparent` header, or start the attempt's span
     * under it.
     */
    traceparent?: string | null;
    /** The trace's vendor state, sent on as the `tracestate` header. */
    tracestate?: string | null;
    type: TaskType;
    /**
     * The workflow it is a step of, if it is one: where
     * `POST /workflows/{id}/steps` adds steps.
     */
    workflow_id?: null | WorkflowId;
}

export interface CompleteRequest {
    lease_token: number;
    result: JsonObject;
}

/** `{"error":{"code","message"}}`: every 4xx and 5xx answer. */
export interface ErrorBody {
    error: ErrorDetail;
}

export interface ErrorDetail {
    /** Stable, machine-readable (`invalid_json`, `task_not_found`, …). */
    code: string;
    /** For people. */
    message: string;
}

/** `POST /write`'s answer. */
export interface EventsAccepted {
    /** Events in the request (resent ones included; each is stored once). */
    accepted: number;
}

export interface FailRequest {
    error: string;
    lease_token: number;
    /** false: the input will never work, dead at once (default true). */
    retry?: boolean | null;
    /** Try again no sooner than this (capped by the backoff's cap). */
    retry_after?: string | null;
}

/** Tasks finished in a recent window, by how they ended. */
export interface FinishedCounts {
    dead: number;
    succeeded: number;
}

/** `GET /health`. */
export interface Health {
    node_id: string;
    /** Always `ok` when the node answers. */
    status: string;
    /** `sqlite` or `postgres`. */
    store: string;
}

export interface HeartbeatRequest {
    /** Extend by this much (default: the claim's default lease). */
    lease?: string | null;
    lease_token: number;
    /** 0 to 100. */
    progress?: number | null;
}

/** `GET /messages/count`. */
export interface MessageCount {
    count: number;
}

/** `GET /messages`. */
export interface Messages {
    messages: StoredEvent[];
}

/** What a step does when a parent ends other than succeeded. */
export type ParentFailure = "cancel" | "run";

/** `GET /health/live` and `GET /health/ready` when they pass. */
export interface Probe {
    node_id: string;
    /** `live` or `ready`. */
    status: string;
}

/** `GET /queues`. */
export interface QueueList {
    queues: QueueStats[];
}

/** One named queue in `GET /tasks/stats`. */
export interface QueueStats {
    /** Starts the rate allows at once. */
    burst?: number | null;
    /** Most running at once across the cluster, if limited. */
    concurrency?: number | null;
    name: string;
    /** When its longest-waiting queued task came due (or will). */
    oldest_queued_at?: string | null;
    /** No worker claims from it until it is resumed. */
    paused: boolean;
    queued: number;
    /** Most started per second across the cluster, if limited. */
    rate_per_second?: number | null;
    running: number;
    /** Its tasks that succeeded in the last minute. */
    succeeded_last_minute: number;
}

/** Requests logged per API node. */
export interface RequestLogStats {
    /** node id → requests logged by it. */
    nodes: { [key: string]: number };
    total: number;
}

/** How a policy is shown and given: `{"base_ms": 1000, "cap_ms": 300000}`. */
export interface RetryPolicy {
    base_ms: number;
    cap_ms: number;
}

/** A queue's limits; absent or null: none. */
export interface SetLimits {
    /** Starts the rate may allow at once (1 or more; default: the rate). */
    burst?: number | null;
    /** Most of its tasks running at once, across the cluster (1 or more). */
    concurrency?: number | null;
    /** Most of its tasks started per second, across the cluster. */
    rate_per_second?: number | null;
}

/** Steps added: each step id with its task. */
export interface StepsAdded {
    /** Step id → task id. */
    steps: { [key: string]: TaskId };
    workflow_id: WorkflowId;
}

/** An event as stored. */
export interface StoredEvent {
    event: JsonObject;
    id: string;
    received_at: string;
}

/** A 200 to a submission: the task that stands for it, or the cached result. */
export type SubmitAnswer = TaskAccepted | CachedResult;

/** One step: a task of its type, and the steps it waits for. */
export interface SubmitStep {
    concurrency_key?: string | null;
    /** Steps that must end before this one runs. */
    depends_on?: string[];
    /** Unique within the workflow: `A-Z a-z 0-9 _ . : -`, 1 to 128 bytes. */
    id: string;
    input: JsonObject;
    max_attempts?: number | null;
    /**
     * `cancel` (default): a parent that does not succeed cancels this step;
     * `run`: it runs once every parent has ended, however.
     */
    on_parent_failure?: ParentFailure;
    priority?: number | null;
    queue?: string | null;
    /** `BASE:CAP`, like `100ms:30s`. */
    retry_backoff?: string | null;
    run_at?: string | null;
    /** A lower per-attempt time limit than the type's, like `30s`. */
    timeout?: string | null;
    /** A registered type, as for `POST /tasks`. */
    type: string;
    /**
     * Its input gets `"parents": {"<step id>": <result>}` (a failed
     * parent's entry is `{"error": …}`).
     */
    with_parent_results?: boolean;
}

/** The general submission form. */
export interface SubmitTask {
    /** At most the workers' key limit of tasks with this key run at once. */
    concurrency_key?: string | null;
    /** Same key within the idempotency window → the same task. */
    idempotency_key?: string | null;
    /**
     * The type's input: `{"string": …}` for hashes, `{"ms": …}` for sleep,
     * `{"fail_times": …}` for flaky.
     */
    input: JsonObject;
    /** Attempts before the task is dead (1 to 100; default: the type's, else the node's). */
    max_attempts?: number | null;
    /** Higher runs first (default: the type's, else 0). */
    priority?: number | null;
    /** A named queue (default: the type's, else `default`). */
    queue?: string | null;
    /** This task's backoff between attempts, `BASE:CAP` like `100ms:30s`. */
    retry_backoff?: string | null;
    /** Not run before this moment. */
    run_at?: string | null;
    /** A lower per-attempt time limit than the type's, like `30s`. */
    timeout?: string | null;
    /**
     * A registered type (`GET /task-types`): `md5`, `sha256`, `argon2`,
     * `sleep`, `flaky`, `noop`, or one of the config's `[task_types]`.
     */
    type: string;
}

/** A workflow: steps and the order among them. */
export interface SubmitWorkflow {
    idempotency_key?: string | null;
    name?: string | null;
    steps: SubmitStep[];
}

/** A task as the store keeps it and the API shows it. */
export interface Task {
    /** Attempts started so far (a claim starts one). */
    attempts: number;
    completed_at?: string | null;
    concurrency_key?: string | null;
    created_at: string;
    /** The last attempt's error, if it failed. */
    error?: string | null;
    /** Every failed attempt, oldest first. */
    errors: AttemptError[];
    id: TaskId;
    /** Sensitive fields are shown as `"[redacted]"`. */
    input: JsonObject;
    /**
     * While it runs: when its worker's lease ends unless a heartbeat
     * renews it (then the rescuer queues it again).
     */
    lease_expires_at?: string | null;
    max_attempts: number;
    /** Higher runs first. */
    priority: number;
    /**
     * How far the running attempt says it is, 0-100 (100 once succeeded;
     * absent for kinds that do not report).
     */
    progress?: number | null;
    /** The named queue it waits in. */
    queue: string;
    result?: JsonObject | null;
    /** The backoff given at submission (`None`: the workers' for its type). */
    retry_backoff?: null | RetryPolicy;
    /** Not claimed before this moment. */
    run_at: string;
    started_at?: string | null;
    status: TaskState;
    /** Its step's id in that workflow. */
    step_id?: string | null;
    /**
     * The tenant of the API key that submitted it; keys of a tenant see
     * only its tasks.
     */
    tenant?: string | null;
    /**
     * This task's own per-attempt time limit, if its submission lowered
     * its type's.
     */
    timeout_ms?: number | null;
    type: TaskType;
    /** The worker that ran (or runs) the latest attempt. */
    worker_id?: string | null;
    /** The workflow this task is a step of, if it is one. */
    workflow_id?: null | WorkflowId;
}

/** A submission's answer: the task that stands for it. */
export interface TaskAccepted {
    /**
     * Present (true) when an equal cacheable task was already queued or
     * running and this submission was folded into it.
     */
    deduplicated?: boolean | null;
    status: TaskState;
    task_id: TaskId;
    type: TaskType;
}

/** Every field set narrows the match; none set matches every task. */
export interface TaskFilter {
    /** Created at or after. */
    created_after?: string | null;
    /** Created before. */
    created_before?: string | null;
    /** Text in the last error, any case. */
    error?: string | null;
    /** Finished (succeeded, dead or cancelled) at or after. */
    finished_after?: string | null;
    /** Finished before. */
    finished_before?: string | null;
    queue?: string | null;
    state?: null | TaskState;
    tenant?: string | null;
    /** A task type's name. */
    type?: string | null;
    /** Only the steps of this workflow. */
    workflow?: null | WorkflowId;
}

/** A task's id: a UUIDv7, so ids sort by creation time and index well. */
export type TaskId = string;

/** One page of `GET /tasks`. */
export interface TaskPage {
    /** Pass as `cursor` for the next page; absent on the last one. */
    next_cursor?: string | null;
    tasks: Task[];
}

/**
 * The order a listing pages through: newest first by creation (ids are
 * time-ordered) or by finish time (finished tasks only).
 */
export type TaskSort = "created" | "finished";

/** Where a task is in its life. */
export type TaskState = "queued" | "running" | "succeeded" | "dead" | "cancelled" | "waiting";

/** `GET /tasks/stats`. */
export interface TaskStats {
    cancelled: number;
    dead: number;
    /** Tasks that finished in the last 60 seconds: the recent throughput. */
    finished_last_minute: FinishedCounts;
    queued: number;
    /** Queued tasks per type (types with queued tasks only). */
    queued_by_type: { [key: string]: number };
    queues: QueueStats[];
    running: number;
    succeeded: number;
    /** Workflow steps waiting for their parents. */
    waiting: number;
    /** Workflows by status (`running`, `succeeded`, `failed`, `cancelled`). */
    workflows: { [key: string]: number };
}

/** A task's type name: 1 to 64 of `A-Za-z0-9_.:-`. */
export type TaskType = string;

export interface TaskTypeList {
    task_types: TaskTypeView[];
}

/** One type as `GET /task-types` shows it. */
export interface TaskTypeView {
    cache: boolean;
    /** Command handler: the program and its arguments. */
    command?: string[] | null;
    /** `http`, `command`, `external`, `rust`, or a built-in's name. */
    handler: string;
    /** HTTP handler: the extra headers' names (values are not shown). */
    header_names: string[];
    input_schema?: JsonObject | null;
    max_attempts?: number | null;
    name: TaskType;
    priority?: number | null;
    queue?: string | null;
    retry_backoff?: null | RetryPolicy;
    /** Input fields sealed at rest and redacted when shown. */
    sensitive: string[];
    /** HTTP handler: whether deliveries carry `Weir-Signature`. */
    signed: boolean;
    timeout_ms: number;
    /** HTTP handler: the target, without credentials or query. */
    url?: string | null;
}

/** One worker as `GET /workers` shows it. */
export interface WorkerInfo {
    /** Tasks it runs now. */
    active_tasks: number;
    /** Tasks it may run at once. */
    concurrency: number;
    /** One of the tasks it runs now. */
    current_task?: string | null;
    failed: number;
    id: string;
    last_heartbeat_at: string;
    processed: number;
    started_at: string;
    status: WorkerStatus;
    /** The task types it runs (empty: not reported, e.g. an older worker). */
    task_types?: string[];
}

/** `GET /workers`. */
export interface WorkerList {
    workers: WorkerInfo[];
}

/** What a worker says it is doing. */
export type WorkerStatus = "online" | "draining" | "offline";

/** A workflow and its steps. */
export interface Workflow {
    created_at: string;
    finished_at?: string | null;
    id: WorkflowId;
    name?: string | null;
    status: WorkflowStatus;
    steps: WorkflowStep[];
    tenant?: string | null;
}

/** A stored workflow: its id and each step's task. */
export interface WorkflowAccepted {
    status: WorkflowStatus;
    /** Step id → task id. */
    steps: { [key: string]: TaskId };
    workflow_id: WorkflowId;
}

/** A workflow's id: a UUIDv7, like a task's. */
export type WorkflowId = string;

/** A page of workflows, newest first, without their steps. */
export interface WorkflowPage {
    /** Pass as `cursor` for the next page; absent on the last. */
    next_cursor?: null | WorkflowId;
    workflows: Workflow[];
}

/** Where a workflow is. */
export type WorkflowStatus = "running" | "succeeded" | "failed" | "cancelled";

/** A step as a workflow's reader sees it. */
export interface WorkflowStep {
    attempts: number;
    /** When it ended. */
    completed_at?: string | null;
    depends_on: string[];
    error?: string | null;
    id: string;
    result?: JsonObject | null;
    /** When its latest attempt started. */
    started_at?: string | null;
    status: TaskState;
    task_id: TaskId;
    type: TaskType;
}

/**
 * Every route: `"METHOD /path/{param}"` → its path parameters, query,
 * request body and the answer's type by status.
 */
export interface Operations {
    /**
     * Waits the configured delay, writes a request-log row, and answers once the
     * row is committed.
     */
    "GET /": {
        path: {};
        query: {
            /** Stored with the request-log row (cut to 4 KiB). */
            message?: string;
        };
        body: undefined;
        responses: {
            /** The row is committed */
            200: string;
            /** Database busy; retry after Retry-After */
            503: ErrorBody;
        };
    };
    /**
     * `GET /audit?action=&limit=&cursor=`: who did what — bulk actions,
     * retries, cancels, queue pauses and limits — with the key's name (never
     * the key), its tenant and the client's address.
     */
    "GET /audit": {
        path: {};
        query: {
            /** Only this action, e.g. `queue.pause`. */
            action?: string;
            /** `next_cursor` of the previous page. */
            cursor?: number;
            /** 1 to 500 (default 100). */
            limit?: number;
        };
        body: undefined;
        responses: {
            /** Newest first */
            200: AuditPage;
            /** Bad query */
            400: ErrorBody;
        };
    };
    "GET /cache/stats": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Cache counters and the most read entries */
            200: CacheStatsView;
        };
    };
    /** `POST /hash/{kind}` with `{"string": …}` (argon2 also takes its cost fields). */
    "POST /hash/{kind}": {
        path: {
            /** md5, sha256 or argon2 */
            kind: string;
        };
        query: {};
        body: JsonObject;
        responses: {
            /** From the cache, or folded into an equal live task */
            200: SubmitAnswer;
            /** Queued (durable) */
            202: TaskAccepted;
            /** Unknown hash or malformed input */
            400: ErrorBody;
        };
    };
    "GET /health": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** The node answers */
            200: Health;
        };
    };
    /** Liveness: the process serves requests (restart it if not). */
    "GET /health/live": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** The process serves */
            200: Probe;
        };
    };
    /**
     * Readiness: send this node traffic — not while it drains, nor while its
     * store does not answer.
     */
    "GET /health/ready": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Ready for traffic */
            200: Probe;
            /** Draining, or the store does not answer */
            503: ErrorBody;
        };
    };
    /** The latest `n` events (default 100, at most 1000), newest first. */
    "GET /messages": {
        path: {};
        query: {
            /** How many, 1 to 1000 (default 100). */
            n?: number;
        };
        body: undefined;
        responses: {
            /** Newest first, by receive time */
            200: Messages;
            /** n out of range */
            400: ErrorBody;
        };
    };
    "GET /messages/count": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Events stored */
            200: MessageCount;
        };
    };
    "GET /metrics": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Prometheus text format */
            200: string;
        };
    };
    "GET /openapi.json": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** This document */
            200: JsonObject;
        };
    };
    /**
     * `GET /queues`: every queue with tasks, limits or a pause — depth, the
     * oldest due task's wait, limits, and whether it is paused.
     */
    "GET /queues": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Every known queue */
            200: QueueList;
        };
    };
    /** `PUT /queues/{name}`: its limits, for every worker at once (no restart). */
    "PUT /queues/{name}": {
        path: {
            /** The queue */
            name: string;
        };
        query: {};
        body: SetLimits;
        responses: {
            /** Set */
            200: QueueStats;
            /** A limit out of range */
            400: ErrorBody;
        };
    };
    /**
     * `POST /queues/{name}/pause`: no worker, built-in or external, claims
     * from it until it is resumed. Answers once every claimer holds to it.
     */
    "POST /queues/{name}/pause": {
        path: {
            /** The queue */
            name: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** Paused */
            200: QueueStats;
            /** Not a queue name */
            400: ErrorBody;
        };
    };
    /** `POST /queues/{name}/resume`: claimable again; waiting workers wake. */
    "POST /queues/{name}/resume": {
        path: {
            /** The queue */
            name: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** Resumed */
            200: QueueStats;
            /** Not a queue name */
            400: ErrorBody;
        };
    };
    "GET /requests/stats": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Requests logged, in all and per node */
            200: RequestLogStats;
        };
    };
    "GET /task-types": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Every registered type with its handler and defaults; no secrets, header values or env */
            200: TaskTypeList;
        };
    };
    /**
     * `GET /tasks?state=&type=&queue=&tenant=&workflow=&created_after=&…&error=&sort=`:
     * a page of the tasks matching every filter given, newest first (or most
     * recently finished first with `sort=finished`); `next_cursor` fetches
     * the next page (absent on the last one).
     */
    "GET /tasks": {
        path: {};
        query: {
            /** Created at or after (RFC 3339). */
            created_after?: string;
            /** Created before (RFC 3339). */
            created_before?: string;
            /** `next_cursor` of the previous page. */
            cursor?: string;
            /** Text in the last error, any case. */
            error?: string;
            /** Finished at or after (RFC 3339). */
            finished_after?: string;
            /** Finished before (RFC 3339). */
            finished_before?: string;
            /** 1 to 500 (default 50). */
            limit?: number;
            queue?: string;
            /**
             * `created` (default: newest first) or `finished` (finished tasks,
             * most recently finished first).
             */
            sort?: TaskSort;
            /** waiting, queued, running, succeeded, dead or cancelled. */
            state?: string;
            tenant?: string;
            /** A task type. */
            type?: string;
            /** Only this workflow's steps. */
            workflow?: string;
        };
        body: undefined;
        responses: {
            /** Newest first */
            200: TaskPage;
            /** Bad filter, limit or cursor */
            400: ErrorBody;
        };
    };
    /** `POST /tasks {"type","input",...}`. */
    "POST /tasks": {
        path: {};
        query: {};
        body: SubmitTask;
        responses: {
            /** An earlier submission stands for this one (idempotency key, or the same cacheable input queued or running), or the result came from the cache */
            200: SubmitAnswer;
            /** Queued (durable); Location names the task */
            202: TaskAccepted;
            /** Malformed submission */
            400: ErrorBody;
            /** Body over the limit */
            413: ErrorBody;
            /** The Idempotency-Key came with another request before */
            422: ErrorBody;
            /** Database busy; retry after Retry-After */
            503: ErrorBody;
            /** The database's disk is full; nothing stored; retry after Retry-After */
            507: ErrorBody;
        };
    };
    /** `GET /tasks/bulk`: the newest 50 bulk actions. */
    "GET /tasks/bulk": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Newest first */
            200: BulkList;
        };
    };
    /**
     * `POST /tasks/bulk`: retries, cancels or deletes many tasks, in batches
     * on the server (each one bounded transaction; claims never wait on a
     * whole action); survives a restart and resumes; changes no task twice.
     */
    "POST /tasks/bulk": {
        path: {};
        query: {};
        body: BulkRequest;
        responses: {
            /** Started; poll GET /tasks/bulk/{id} */
            202: BulkView;
            /** Bad action, ids or filter */
            400: ErrorBody;
            /** Another tenant's filter */
            403: ErrorBody;
        };
    };
    /**
     * `GET /tasks/bulk/{id}`: the action's status (`running`, `done`) and
     * counts: tasks looked at, changed, and left as they were.
     */
    "GET /tasks/bulk/{id}": {
        path: {
            /** The bulk action's id */
            id: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** The action */
            200: BulkView;
            /** No such bulk action */
            404: ErrorBody;
        };
    };
    /**
     * `GET /tasks/stats`: how many tasks are in each state, and per named
     * queue how many are queued and running, with the queue's limits.
     */
    "GET /tasks/stats": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Counts by state and by queue */
            200: TaskStats;
        };
    };
    /** `GET /tasks/{id}`. */
    "GET /tasks/{id}": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** The task, with progress, result or errors */
            200: Task;
            /** No such task */
            404: ErrorBody;
        };
    };
    /**
     * `DELETE /tasks/{id}`: cancels a queued task; a running one is fenced off
     * (its result will be refused) and shown as cancelled at once.
     */
    "DELETE /tasks/{id}": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** Cancelled */
            200: Task;
            /** No such task */
            404: ErrorBody;
            /** Already finished */
            409: ErrorBody;
        };
    };
    /** `POST /tasks/{id}/complete`. */
    "POST /tasks/{id}/complete": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: CompleteRequest;
        responses: {
            /** Succeeded; the result is stored */
            200: AttemptAnswer;
            /** No or a wrong worker token */
            401: ErrorBody;
            /** No such task */
            404: ErrorBody;
            /** lease_lost: the result was not recorded */
            409: ErrorBody;
        };
    };
    /** `POST /tasks/{id}/fail`. */
    "POST /tasks/{id}/fail": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: FailRequest;
        responses: {
            /** Recorded: queued again (retry) or dead */
            200: AttemptAnswer;
            /** No or a wrong worker token */
            401: ErrorBody;
            /** No such task */
            404: ErrorBody;
            /** lease_lost: nothing was recorded */
            409: ErrorBody;
        };
    };
    /** `POST /tasks/{id}/heartbeat`. */
    "POST /tasks/{id}/heartbeat": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: HeartbeatRequest;
        responses: {
            /** Lease extended */
            200: AttemptAnswer;
            /** No or a wrong worker token */
            401: ErrorBody;
            /** No such task */
            404: ErrorBody;
            /** lease_lost: stop working on it */
            409: ErrorBody;
        };
    };
    /** `POST /tasks/{id}/retry`: a dead task queued again with fresh attempts. */
    "POST /tasks/{id}/retry": {
        path: {
            /** The task's id */
            id: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** Queued again */
            200: Task;
            /** No such task */
            404: ErrorBody;
            /** The task is not dead */
            409: ErrorBody;
        };
    };
    "GET /workers": {
        path: {};
        query: {};
        body: undefined;
        responses: {
            /** Every worker that has reported, with its status */
            200: WorkerList;
        };
    };
    /** `POST /workers/{worker_id}/claim`. */
    "POST /workers/{worker_id}/claim": {
        path: {
            /** The external worker's id, shown in GET /workers */
            worker_id: string;
        };
        query: {};
        body: ClaimRequest;
        responses: {
            /** Tasks now leased to this worker (possibly none, after waiting) */
            200: ClaimAnswer;
            /** Unknown type or malformed request */
            400: ErrorBody;
            /** No or a wrong worker token */
            401: ErrorBody;
        };
    };
    /** `GET /workflows?status=&name=&limit=&cursor=`. */
    "GET /workflows": {
        path: {};
        query: {
            /** The `next_cursor` of the page before. */
            cursor?: string;
            /** 1 to 500 (default 50). */
            limit?: number;
            name?: string;
            /** `running`, `succeeded`, `failed` or `cancelled`. */
            status?: string;
        };
        body: undefined;
        responses: {
            /** Newest first, without steps */
            200: WorkflowPage;
            /** A bad filter or cursor */
            400: ErrorBody;
        };
    };
    /**
     * `POST /workflows`: every step checked before anything is stored, then
     * the whole workflow in one transaction.
     */
    "POST /workflows": {
        path: {};
        query: {};
        body: SubmitWorkflow;
        responses: {
            /** An earlier submission under the same Idempotency-Key stored it (Idempotent-Replayed: true) */
            200: WorkflowAccepted;
            /** Stored (durable): steps without parents queued, the others waiting */
            202: WorkflowAccepted;
            /** A cycle (`workflow_cycle`), an unknown parent, a repeated step id, or a step its type refuses */
            400: ErrorBody;
            /** More steps than --max-workflow-steps, or a body over the limit */
            413: ErrorBody;
            /** The Idempotency-Key came with another request before */
            422: ErrorBody;
            /** Database busy; retry after Retry-After */
            503: ErrorBody;
            /** The database's disk is full; nothing stored */
            507: ErrorBody;
        };
    };
    /**
     * `GET /workflows/{id}`: the workflow and every step's state (and when
     * each started and ended); with `?wait=20s`, once it has finished or the
     * wait is over — a client waits in one request, not a poll loop.
     */
    "GET /workflows/{id}": {
        path: {
            /** The workflow's id */
            id: string;
        };
        query: {
            /**
             * Hold the answer until the workflow is no longer running, at most
             * this long (`"20s"`, or seconds; up to 60 s).
             */
            wait?: string;
        };
        body: undefined;
        responses: {
            /** The workflow and its steps */
            200: Workflow;
            /** A wait that is not a duration */
            400: ErrorBody;
            /** No such workflow */
            404: ErrorBody;
        };
    };
    /**
     * `POST /workflows/{id}/cancel`: steps not ended are cancelled; a running
     * one is fenced off as a task cancel does.
     */
    "POST /workflows/{id}/cancel": {
        path: {
            /** The workflow's id */
            id: string;
        };
        query: {};
        body: undefined;
        responses: {
            /** Cancelled (or already finished: its status unchanged) */
            200: Workflow;
            /** No such workflow */
            404: ErrorBody;
        };
    };
    /**
     * `POST /workflows/{id}/steps`: a running step adds steps to its own
     * workflow (a batch). Every step waiting on it waits on them too, so a
     * step after it runs once it and everything it added have ended. The same
     * step adding the same ids again (a retried attempt) stores nothing more.
     */
    "POST /workflows/{id}/steps": {
        path: {
            /** The workflow's id */
            id: string;
        };
        query: {};
        body: AddSteps;
        responses: {
            /** This step added these ids before (Idempotent-Replayed: true) */
            200: StepsAdded;
            /** Stored: steps without parents queued, the others waiting */
            202: StepsAdded;
            /** A cycle, an unknown parent, a repeated step id, or a step its type refuses */
            400: ErrorBody;
            /** No such workflow, or the task is no step of it */
            404: ErrorBody;
            /** `lease_lost`: the attempt no longer holds its task; `step_exists`: a step id taken; `workflow_not_running`: it is being cancelled */
            409: ErrorBody;
            /** The workflow would hold more than --max-workflow-steps */
            413: ErrorBody;
        };
    };
    /**
     * Accepts one object, an array of objects, or NDJSON; answers 202 once the
     * events are durable (committed, or in the Redis buffer in buffered mode).
     */
    "POST /write": {
        path: {};
        query: {};
        body: JsonObject;
        responses: {
            /** Durable: committed, or in the Redis buffer */
            202: EventsAccepted;
            /** Not JSON, or an event is not an object; nothing stored */
            400: ErrorBody;
            /** Body or event count over the limit */
            413: ErrorBody;
            /** The Idempotency-Key came with another batch before */
            422: ErrorBody;
            /** Database busy or buffer full; retry after Retry-After */
            503: ErrorBody;
            /** The database's disk is full; nothing stored; retry after Retry-After */
            507: ErrorBody;
        };
    };
}
