// weir's TypeScript client: tasks, workflows and events over weir's HTTP
// API, on Node 20's own fetch, without runtime dependencies.
//
//     import { Client, chain, chord, group, step } from "weir-client";
//
//     const weir = new Client("http://127.0.0.1:8080");       // { apiKey } with --api-keys
//     const accepted = await weir.submit("md5", { string: "hello" }, { priority: 5 });
//     console.log(await weir.result(accepted));               // { md5: "5d41…" }
//
//     const flow = chain(
//         chord(group(...["a", "b", "c"].map((s) => step("md5", { string: s }))),
//               step("noop", {}, { id: "report" })),        // gets "parents": {…} in its input
//         step("sha256", { string: "after" }),
//     );
//     const wf = await weir.workflow(flow, { name: "nightly" });
//     console.log((await weir.waitWorkflow(wf.workflow_id)).status);   // succeeded
//
// Every error weir answers throws `WeirError` (status, code, message); a
// 429, 503 or 507 is retried after its Retry-After a few times first.
// External workers are in "weir-client/worker".

import type {
    AddSteps,
    CachedResult,
    EventsAccepted,
    JsonObject,
    MessageCount,
    Messages,
    Operations,
    StepsAdded,
    SubmitAnswer,
    SubmitStep,
    SubmitWorkflow,
    Task,
    TaskAccepted,
    TaskPage,
    TaskTypeList,
    WorkerList,
    Workflow,
    WorkflowAccepted,
    WorkflowPage,
} from "./generated.js";
import { duration, sleep, Transport, type TransportOptions } from "./http.js";
import type { FinishedTaskState, HashKind, StepOptions, SubmitOptions } from "./types.js";

export { Transport, WeirConnectionError, WeirError, retryAfterMs } from "./http.js";
export type { Answer, CallOptions, TransportOptions } from "./http.js";
export type * from "./types.js";

/** A task or workflow still running when the wait's deadline passed. */
export class WaitTimeoutError extends Error {
    override readonly name: string = "WaitTimeoutError";
}

/** `Client.result`: the task ended without succeeding (dead or cancelled). */
export class TaskFailedError extends Error {
    override readonly name: string = "TaskFailedError";
    readonly task: Task;

    constructor(task: Task) {
        super(`task ${task.id} (${task.type}) ended ${task.status}${task.error ? `: ${task.error}` : ""}`);
        this.task = task;
    }
}

const FINISHED: ReadonlySet<string> = new Set<FinishedTaskState>(["succeeded", "dead", "cancelled"]);

/** The answer came from the shared cache: no task was queued. */
export function isCached(answer: SubmitAnswer | TaskAccepted): answer is CachedResult {
    return (answer as CachedResult).source === "cache" && !("task_id" in answer);
}

// -- workflows as a canvas (Celery's chain, group and chord) ------------------

/** Steps, and which of them start and end the whole (a step is a canvas of one). */
export interface Canvas {
    readonly steps: readonly Step[];
    readonly heads: readonly Step[];
    readonly tails: readonly Step[];
}

/** A list of steps and canvases, run side by side (a group). */
export type CanvasLike = Canvas | readonly Canvas[];

/** One step: a task of `type` with `input` and its options. */
export class Step implements Canvas {
    readonly type: string;
    readonly input: JsonObject;
    readonly id: string | undefined;
    readonly options: StepOptions;
    /** The steps it waits for. */
    readonly dependsOn: Step[] = [];

    constructor(type: string, input: JsonObject, options: StepOptions & { id?: string } = {}) {
        const { id, ...rest } = options;
        this.type = type;
        this.input = input;
        this.id = id;
        this.options = rest;
    }

    get steps(): readonly Step[] {
        return [this];
    }

    get heads(): readonly Step[] {
        return [this];
    }

    get tails(): readonly Step[] {
        return [this];
    }
}

/** A step: `step("md5", { string: "x" }, { id: "hash", priority: 5 })`. */
export function step(type: string, input: JsonObject, options: StepOptions & { id?: string } = {}): Step {
    return new Step(type, input, options);
}

function canvasOf(part: CanvasLike): Canvas {
    return isCanvasList(part) ? group(...part) : part;
}

function isCanvasList(part: CanvasLike): part is readonly Canvas[] {
    return Array.isArray(part);
}

/** Each part runs after the one before has ended (all of it, for a group). */
export function chain(...parts: CanvasLike[]): Canvas {
    if (parts.length === 0) throw new TypeError("a chain needs at least one part");
    const canvases = parts.map(canvasOf);
    for (let i = 1; i < canvases.length; i++) {
        for (const head of canvases[i]!.heads) {
            for (const tail of canvases[i - 1]!.tails) {
                if (!head.dependsOn.includes(tail)) head.dependsOn.push(tail);
            }
        }
    }
    return {
        steps: canvases.flatMap((c) => c.steps),
        heads: canvases[0]!.heads,
        tails: canvases[canvases.length - 1]!.tails,
    };
}

/** The parts run side by side. */
export function group(...parts: CanvasLike[]): Canvas {
    if (parts.length === 0) throw new TypeError("a group needs at least one part");
    const canvases = parts.map(canvasOf);
    return {
        steps: canvases.flatMap((c) => c.steps),
        heads: canvases.flatMap((c) => c.heads),
        tails: canvases.flatMap((c) => c.tails),
    };
}

/**
 * `callback` runs once every part of `header` has ended, with their
 * results (`"parents": {"<step id>": <result>}` in its input).
 */
export function chord(header: CanvasLike, callback: CanvasLike): Canvas {
    const after = canvasOf(callback);
    for (const head of after.heads) head.options.with_parent_results = true;
    return chain(header, after);
}

/**
 * The steps of `canvas` as the API takes them. Unnamed steps are named
 * `<prefix><type>-<n>` in order, so the same canvas is named the same
 * every time (a retried attempt adding it is stored once).
 */
export function stepsOf(canvas: CanvasLike, idPrefix = ""): SubmitStep[] {
    const steps = canvasOf(canvas).steps;
    const taken = new Set(steps.map((s) => s.id).filter((id): id is string => id !== undefined));
    const names = new Map<Step, string>();
    let counter = 0;
    for (const s of steps) {
        let id = s.id;
        while (id === undefined) {
            counter += 1;
            const candidate = `${idPrefix}${s.type}-${counter}`;
            if (!taken.has(candidate)) {
                id = candidate;
                taken.add(candidate);
            }
        }
        names.set(s, id);
    }
    return steps.map((s) => {
        const entry: SubmitStep = { id: names.get(s)!, type: s.type, input: s.input, ...s.options };
        if (s.dependsOn.length) entry.depends_on = s.dependsOn.map((p) => names.get(p) ?? p.id ?? "?");
        return entry;
    });
}

/**
 * The body of `POST /workflows/{id}/steps`: `canvas`'s steps added by
 * running step `taskId`, unnamed ones named after it.
 */
export function stepsBody(taskId: string, leaseToken: number, canvas: CanvasLike): AddSteps {
    return { task_id: taskId, lease_token: leaseToken, steps: stepsOf(canvas, `${taskId}:`) };
}

// -- the client ---------------------------------------------------------------

export interface ClientOptions extends Omit<TransportOptions, "token"> {
    /** An API key (`weir api-key`), when weir runs with --api-keys. */
    apiKey?: string | undefined;
}

export interface WaitOptions {
    /** Give up (WaitTimeoutError) after this long (default 60 s for a task, 120 s for a workflow). */
    timeoutMs?: number;
    /** Longest pause between two looks at a task (default 1 s; the first are shorter). */
    pollMs?: number;
    signal?: AbortSignal;
}

/** A connection to a weir cluster (the lb, or any API node). */
export class Client {
    /** The typed HTTP layer: every route of `Operations`, for what the methods do not cover. */
    readonly http: Transport;

    constructor(baseUrl: string, options: ClientOptions = {}) {
        const { apiKey, ...rest } = options;
        this.http = new Transport(baseUrl, { ...rest, token: apiKey });
    }

    // -- tasks ----------------------------------------------------------------

    /**
     * Queues a task (`POST /tasks`): 202 `{task_id, status: "queued"}`; an
     * equal live task, an earlier submission with the same
     * `idempotency_key`, or a cached result answers instead (`isCached`).
     */
    submit(type: string, input: JsonObject, options: SubmitOptions = {}): Promise<SubmitAnswer | TaskAccepted> {
        return this.http.call("POST /tasks", {
            body: { ...options, type, input },
            idempotent: options.idempotency_key !== undefined && options.idempotency_key !== null,
        });
    }

    /** `POST /hash/{kind}`: md5, sha256 (cached) or argon2 of `input.string`. */
    hash(kind: HashKind, input: JsonObject, options: { idempotencyKey?: string } = {}): Promise<SubmitAnswer | TaskAccepted> {
        return this.http.call("POST /hash/{kind}", {
            path: { kind },
            body: input,
            ...(options.idempotencyKey ? { headers: { "idempotency-key": options.idempotencyKey } } : {}),
        });
    }

    /** `GET /tasks/{id}`. */
    get(taskId: string): Promise<Task> {
        return this.http.call("GET /tasks/{id}", { path: { id: taskId } });
    }

    /**
     * The task once it has ended (succeeded, dead or cancelled). weir holds
     * no task read open, so this looks again every `pollMs` at most.
     */
    async wait(task: string | TaskAccepted, options: WaitOptions = {}): Promise<Task> {
        const id = typeof task === "string" ? task : task.task_id;
        const timeoutMs = options.timeoutMs ?? 60_000;
        const deadline = Date.now() + timeoutMs;
        let pause = 25;
        for (;;) {
            const got = await this.get(id);
            if (FINISHED.has(got.status)) return got;
            const left = deadline - Date.now();
            if (left <= 0) throw new WaitTimeoutError(`task ${id} still ${got.status} after ${timeoutMs} ms`);
            pause = Math.min(pause * 2, options.pollMs ?? 1000);
            await sleep(Math.min(pause, left), options.signal);
        }
    }

    /**
     * The result of a submission: the cached one, or the task's once it
     * succeeded; a task that ended otherwise throws `TaskFailedError`.
     */
    async result(answer: SubmitAnswer | TaskAccepted, options: WaitOptions = {}): Promise<JsonObject> {
        if (isCached(answer)) return answer.result;
        const task = await this.wait(answer, options);
        if (task.status !== "succeeded") throw new TaskFailedError(task);
        return task.result ?? {};
    }

    /** `DELETE /tasks/{id}`: cancels a task not ended (a running one is fenced off). */
    cancel(taskId: string): Promise<Task> {
        return this.http.call("DELETE /tasks/{id}", { path: { id: taskId } });
    }

    /** `POST /tasks/{id}/retry`: a dead task queued again with fresh attempts. */
    retry(taskId: string): Promise<Task> {
        return this.http.call("POST /tasks/{id}/retry", { path: { id: taskId } });
    }

    /** `GET /tasks`: a page, newest first; pass `next_cursor` as `cursor` for the next. */
    list(query: Operations["GET /tasks"]["query"] = {}): Promise<TaskPage> {
        return this.http.call("GET /tasks", { query });
    }

    // -- workflows --------------------------------------------------------------

    /**
     * Submits a workflow built with `step`/`chain`/`group`/`chord` (or a
     * list of steps): `workflow_id` and each step's task.
     */
    workflow(canvas: CanvasLike, options: Omit<SubmitWorkflow, "steps"> = {}): Promise<WorkflowAccepted> {
        return this.http.call("POST /workflows", {
            body: { ...options, steps: stepsOf(canvas) },
            idempotent: options.idempotency_key !== undefined && options.idempotency_key !== null,
        });
    }

    /** `GET /workflows/{id}`: its status and every step's. */
    getWorkflow(workflowId: string): Promise<Workflow> {
        return this.http.call("GET /workflows/{id}", { path: { id: workflowId } });
    }

    /**
     * The workflow once nothing more runs (succeeded, failed, cancelled):
     * weir holds each request until then (`?wait=`), up to 20 s a time.
     */
    async waitWorkflow(workflowId: string, options: Omit<WaitOptions, "pollMs"> = {}): Promise<Workflow> {
        const timeoutMs = options.timeoutMs ?? 120_000;
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const holdMs = Math.max(0, Math.min(deadline - Date.now(), 20_000));
            const got = await this.http.call("GET /workflows/{id}", {
                path: { id: workflowId },
                query: { wait: duration(holdMs) },
                timeoutMs: holdMs + this.http.timeoutMs,
                ...(options.signal ? { signal: options.signal } : {}),
            });
            if (got.status !== "running") return got;
            if (Date.now() >= deadline) {
                throw new WaitTimeoutError(`workflow ${workflowId} still running after ${timeoutMs} ms`);
            }
        }
    }

    /** `POST /workflows/{id}/cancel`: waiting and queued steps cancelled, running ones fenced off. */
    cancelWorkflow(workflowId: string): Promise<Workflow> {
        return this.http.call("POST /workflows/{id}/cancel", { path: { id: workflowId } });
    }

    /**
     * From a running step (`taskId` under `leaseToken`): adds `canvas`'s
     * steps to its workflow. Steps that depend on the running step wait
     * for everything it added too (a batch).
     */
    addSteps(workflowId: string, taskId: string, leaseToken: number, canvas: CanvasLike): Promise<StepsAdded> {
        return this.http.call("POST /workflows/{id}/steps", {
            path: { id: workflowId },
            body: stepsBody(taskId, leaseToken, canvas),
            // The same step adding the same ids again stores nothing more.
            idempotent: true,
        });
    }

    /** `GET /workflows`: a page, newest first, without steps. */
    listWorkflows(query: Operations["GET /workflows"]["query"] = {}): Promise<WorkflowPage> {
        return this.http.call("GET /workflows", { query });
    }

    // -- events -------------------------------------------------------------------

    /**
     * `POST /write`: one event or many, answered once they are durable. An
     * event's `id`, or `idempotencyKey`, makes a resend a no-op. `ndjson`
     * sends them as one JSON object per line.
     */
    writeEvents(events: JsonObject | readonly JsonObject[], options: { idempotencyKey?: string; ndjson?: boolean } = {}): Promise<EventsAccepted> {
        const list = Array.isArray(events) ? events : [events];
        const data = options.ndjson
            ? list.map((e) => JSON.stringify(e)).join("\n") + "\n"
            : JSON.stringify(Array.isArray(events) ? list : events);
        const resendable = options.idempotencyKey !== undefined
            || (list.length > 0 && list.every((e) => (e as JsonObject)["id"] !== undefined));
        return this.http.call("POST /write", {
            raw: { contentType: options.ndjson ? "application/x-ndjson" : "application/json", data },
            ...(options.idempotencyKey ? { headers: { "idempotency-key": options.idempotencyKey } } : {}),
            idempotent: resendable,
        });
    }

    /** `GET /messages`: the latest `n` events (1 to 1000, default 100), newest first. */
    messages(n?: number): Promise<Messages> {
        return this.http.call("GET /messages", { query: n === undefined ? {} : { n } });
    }

    /** `GET /messages/count`: events stored. */
    messageCount(): Promise<MessageCount> {
        return this.http.call("GET /messages/count", {});
    }

    // -- the cluster --------------------------------------------------------------

    /** `GET /task-types`: the registered types, without secrets. */
    taskTypes(): Promise<TaskTypeList> {
        return this.http.call("GET /task-types", {});
    }

    /** `GET /workers`: workers (external ones included) and their counts. */
    workers(): Promise<WorkerList> {
        return this.http.call("GET /workers", {});
    }
}
