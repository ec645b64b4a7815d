// An external weir worker in TypeScript (`handler = "external"` task
// types): long-polls `POST /workers/{id}/claim`, runs each task's handler,
// keeps its lease alive with heartbeats, and reports `complete` or `fail`.
// weir's leases and fencing apply: if a lease lapses (the process stalled)
// and the task is handed to another worker, this worker's late report is
// refused (409 `lease_lost`) and dropped.
//
//     import { Worker, Permanent } from "weir-client/worker";
//
//     const worker = new Worker("http://127.0.0.1:8080", { token: process.env.WEIR_WORKER_TOKEN! });
//     worker.task("thumbnail", async (input, task) => {
//         if (typeof input.path !== "string") throw new Permanent("input.path is required");  // dead at once
//         task.progress(50);
//         return { thumb: `${input.path}.thumb.png` };                                         // the result
//     });
//     await worker.run();   // until SIGTERM/SIGINT: stops claiming, finishes what runs
//
// Any other error is a retryable failure (retried with backoff until the
// task's max_attempts); `new Retry("busy", { afterSeconds: 30 })` asks for a
// retry no sooner than 30 s.

import { hostname } from "node:os";

import type { CanvasLike } from "./index.js";
import { stepsBody } from "./index.js";
import type { ClaimedTaskView, CompleteRequest, FailRequest, JsonObject, StepsAdded } from "./generated.js";
import { backoffMs, duration, sleep, Transport, WeirConnectionError, WeirError, type ResponseInfo } from "./http.js";

export { WeirConnectionError, WeirError } from "./http.js";

/** A failure worth retrying; `afterSeconds` delays the next attempt. */
export class Retry extends Error {
    override readonly name: string = "Retry";
    readonly afterSeconds: number | undefined;

    constructor(message: string, options: { afterSeconds?: number } = {}) {
        super(message);
        this.afterSeconds = options.afterSeconds;
    }
}

/** A failure no retry can mend: the task is dead at once. */
export class Permanent extends Error {
    override readonly name: string = "Permanent";
}

/** This attempt no longer holds its task (409 `lease_lost`): stop working on it. */
export class LeaseLost extends WeirError {
    override readonly name: string = "LeaseLost";
}

/** What a handler returns: the task's result (nothing stores `{}`). */
export type HandlerResult = CompleteRequest["result"] | void;

/** Runs one attempt of a task of its type. */
export type Handler<I extends JsonObject = JsonObject> = (input: I, task: Task) => HandlerResult | Promise<HandlerResult>;

export interface WorkerOptions {
    /** The worker token (`--worker-token`; `weir up` prints one). */
    token: string;
    /** Shown in `GET /workers` (default `ts-<host>-<pid>`). */
    workerId?: string;
    /** Tasks run at once (default 4). */
    concurrency?: number;
    /** How long a claim waits for work when none is due, up to 30 (default 5 s). */
    waitSeconds?: number;
    /** The lease each claimed task holds between heartbeats, 1 to 3600 (default 30 s). */
    leaseSeconds?: number;
    /** Time between a task's heartbeats (default a third of the lease). */
    heartbeatMs?: number;
    /** Only these queues (default: every queue). */
    queues?: string[];
    /** Longest wait for one answer besides a claim's long poll (default 30 s). */
    timeoutMs?: number;
    /** Retries of a 429/503/507 or a connection failure inside one call (default 5). */
    retries?: number;
    /** Where the worker says what happened (default: stderr). */
    log?: (line: string) => void;
    /** Called with every answer; for logging and metrics. */
    onResponse?: (info: ResponseInfo) => void;
}

export interface RunOptions {
    /** Stop claiming after this many tasks, then drain (default: run until stopped). */
    maxTasks?: number;
    /** Stop (and drain) on SIGTERM and SIGINT; a second signal exits at once (default true). */
    handleSignals?: boolean;
}

/** One claimed attempt of a task. */
export class Task {
    readonly id: string;
    readonly type: string;
    readonly input: JsonObject;
    /** This attempt's number, from 1. */
    readonly attempt: number;
    readonly maxAttempts: number;
    readonly leaseToken: number;
    /** The attempt's time limit: `signal` aborts past it. */
    readonly timeoutMs: number;
    /** The workflow it is a step of, if it is one. */
    readonly workflowId: string | undefined;
    readonly stepId: string | undefined;
    /**
     * The W3C trace context weir sent with it (the span that queued it):
     * continue the trace from it, e.g. as the parent of the
     * handler's span or as headers of its own calls downstream.
     */
    readonly traceparent: string | undefined;
    readonly tracestate: string | undefined;
    /** Aborted once the attempt no longer holds its task (lease lost, timed out): stop then. */
    readonly signal: AbortSignal;
    /** The claim's answer for it, as weir sent it. */
    readonly claimed: ClaimedTaskView;
    /** @internal */ reportedProgress: number | undefined;
    /** @internal */ readonly controller: AbortController;
    readonly #http: Transport;

    /** @internal */
    constructor(http: Transport, claimed: ClaimedTaskView) {
        this.#http = http;
        this.claimed = claimed;
        this.id = claimed.id;
        this.type = claimed.type;
        this.input = claimed.input;
        this.attempt = claimed.attempt;
        this.maxAttempts = claimed.max_attempts;
        this.leaseToken = claimed.lease_token;
        this.timeoutMs = claimed.timeout_ms;
        this.workflowId = claimed.workflow_id ?? undefined;
        this.stepId = claimed.step_id ?? undefined;
        this.traceparent = claimed.traceparent || undefined;
        this.tracestate = claimed.tracestate || undefined;
        this.controller = new AbortController();
        this.signal = this.controller.signal;
    }

    /** Reports how far the task is (0-100), sent with the next heartbeat. */
    progress(percent: number): void {
        this.reportedProgress = Math.max(0, Math.min(100, Math.trunc(percent)));
    }

    /**
     * Adds steps (built with `step`/`chain`/`group`/`chord`) to this step's
     * workflow: the steps after this one wait for them too. Throws
     * `LeaseLost` once the attempt lost its task.
     */
    async addSteps(canvas: CanvasLike): Promise<StepsAdded> {
        if (this.workflowId === undefined) {
            throw new WeirError(409, "not_a_step", `task ${this.id} is no workflow step`, "POST /workflows/{id}/steps");
        }
        return this.#http.call("POST /workflows/{id}/steps", {
            path: { id: this.workflowId },
            body: stepsBody(this.id, this.leaseToken, canvas),
            idempotent: true,
        });
    }
}

/** Pulls tasks of the types it has handlers for, and runs them. */
export class Worker {
    readonly workerId: string;
    readonly concurrency: number;
    readonly waitSeconds: number;
    readonly leaseSeconds: number;
    readonly heartbeatMs: number;
    readonly queues: string[] | undefined;
    /** Attempts reported as succeeded, and as failed. */
    processed = 0;
    failed = 0;
    readonly #http: Transport;
    readonly #handlers = new Map<string, Handler>();
    readonly #running = new Map<string, Promise<void>>();
    readonly #log: (line: string) => void;
    readonly #startedAt = new Date().toISOString();
    #stopping = false;
    #stopped = new AbortController();
    #wake: (() => void) | undefined;

    constructor(baseUrl: string, options: WorkerOptions) {
        if (!options.token) throw new TypeError("a worker needs the worker token (--worker-token)");
        this.#http = new Transport(baseUrl, {
            token: options.token,
            timeoutMs: options.timeoutMs,
            retries: options.retries,
            onResponse: options.onResponse,
        });
        this.workerId = options.workerId ?? `ts-${hostname()}-${process.pid}`;
        this.concurrency = Math.max(1, options.concurrency ?? 4);
        this.waitSeconds = options.waitSeconds ?? 5;
        this.leaseSeconds = options.leaseSeconds ?? 30;
        this.heartbeatMs = options.heartbeatMs ?? Math.max(200, (this.leaseSeconds * 1000) / 3);
        this.queues = options.queues;
        this.#log = options.log ?? ((line) => console.error(`weir-worker: ${line}`));
    }

    /** Registers `handler` for task type `type`. */
    task<I extends JsonObject = JsonObject>(type: string, handler: Handler<I>): this {
        this.#handlers.set(type, handler as Handler);
        return this;
    }

    /** Tasks running now. */
    get running(): number {
        return this.#running.size;
    }

    /** Stops claiming; running tasks finish, then `run` returns. */
    stop(): void {
        if (this.#stopping) return;
        this.#stopping = true;
        this.#stopped.abort(new Error("the worker is stopping"));
        this.#notify();
    }

    /** Claims up to `max` tasks (long-polling up to `waitSeconds`). */
    async claim(max: number): Promise<Task[]> {
        const answer = await this.#http.call("POST /workers/{worker_id}/claim", {
            path: { worker_id: this.workerId },
            body: {
                types: [...this.#handlers.keys()].sort(),
                max,
                wait: duration(this.waitSeconds * 1000),
                lease: duration(this.leaseSeconds * 1000),
                processed: this.processed,
                failed: this.failed,
                started_at: this.#startedAt,
                ...(this.queues ? { queues: this.queues } : {}),
            },
            timeoutMs: this.waitSeconds * 1000 + this.#http.timeoutMs,
        });
        return answer.tasks.map((t) => new Task(this.#http, t));
    }

    /**
     * Claims and runs tasks until stopped (`stop()`, SIGTERM or SIGINT) or,
     * with `maxTasks`, until that many have been taken; then waits for the
     * running ones to finish. A claim already waiting when the stop comes
     * is let finish (at most `waitSeconds`), and what it brings is run.
     */
    async run(options: RunOptions = {}): Promise<{ processed: number; failed: number }> {
        if (this.#handlers.size === 0) throw new TypeError("register at least one handler with worker.task(type, fn)");
        const signals: NodeJS.Signals[] = ["SIGTERM", "SIGINT"];
        const onSignal = (signal: NodeJS.Signals) => {
            if (this.#stopping) {
                // A second signal: no more waiting, the signal's own way out.
                for (const s of signals) process.off(s, onSignal);
                this.#log(`${signal} again: exiting without waiting for ${this.#running.size} running task(s)`);
                process.kill(process.pid, signal);
                return;
            }
            this.#log(`${signal}: stopping`);
            this.stop();
        };
        if (options.handleSignals ?? true) for (const s of signals) process.on(s, onSignal);
        try {
            await this.#claimLoop(options.maxTasks);
            if (this.#stopping) this.#log(`stopped claiming; waiting for ${this.#running.size} running task(s)`);
            while (this.#running.size > 0) await Promise.all(this.#running.values());
        } finally {
            for (const s of signals) process.off(s, onSignal);
        }
        this.#log(`done: ${this.processed} processed, ${this.failed} failed`);
        return { processed: this.processed, failed: this.failed };
    }

    async #claimLoop(maxTasks: number | undefined): Promise<void> {
        let taken = 0;
        let failures = 0;
        while (!this.#stopping) {
            let room = this.concurrency - this.#running.size;
            if (maxTasks !== undefined) {
                room = Math.min(room, maxTasks - taken);
                if (taken >= maxTasks) return;
            }
            if (room <= 0) {
                await this.#changed();
                continue;
            }
            let tasks: Task[];
            try {
                tasks = await this.claim(room);
                failures = 0;
            } catch (e) {
                // weir away, busy or refusing: wait as it asks, else back off.
                const wait = e instanceof WeirError && e.retryAfterMs !== undefined
                    ? e.retryAfterMs
                    : Math.max(250, backoffMs(failures, 500, 30_000));
                failures += 1;
                this.#log(`claim failed (${describe(e)}); again in ${Math.round(wait)} ms`);
                await sleep(wait, this.#stopped.signal).catch(() => {});
                continue;
            }
            for (const task of tasks) {
                taken += 1;
                const done = this.#runOne(task)
                    .catch((e: unknown) => this.#log(`${task.id}: ${describe(e)}`))
                    .finally(() => {
                        this.#running.delete(task.id);
                        this.#notify();
                    });
                this.#running.set(task.id, done);
            }
        }
    }

    /** Resolves at the next task end or stop. */
    #changed(): Promise<void> {
        return new Promise((resolve) => {
            this.#wake = resolve;
        });
    }

    #notify(): void {
        const wake = this.#wake;
        this.#wake = undefined;
        wake?.();
    }

    async #runOne(task: Task): Promise<void> {
        const handler = this.#handlers.get(task.type);
        // (Past 2^31 ms a timer would fire at once: no limit to keep then.)
        const timeout = task.timeoutMs < 2 ** 31 ? setTimeout(() => {
            task.controller.abort(new Error(`timed out after ${task.timeoutMs} ms`));
        }, task.timeoutMs) : undefined;
        const beats = this.#heartbeats(task);
        let outcome: { what: "complete"; body: CompleteRequest } | { what: "fail"; body: FailRequest };
        try {
            if (!handler) throw new Permanent(`this worker has no handler for ${task.type}`);
            const result = await handler(task.input, task);
            outcome = { what: "complete", body: { lease_token: task.leaseToken, result: result ?? {} } };
        } catch (e) {
            outcome = { what: "fail", body: failure(task, e) };
        } finally {
            clearTimeout(timeout);
            beats.stop();
        }
        if (task.signal.aborted && task.signal.reason instanceof LeaseLost) {
            this.#log(`${task.id}: lease lost; its ${outcome.what} is dropped`);
            return;
        }
        await this.#report(task, outcome);
    }

    /** Heartbeats for `task` until stopped; a lost lease aborts its signal. */
    #heartbeats(task: Task): { stop(): void } {
        let timer: NodeJS.Timeout | undefined;
        let stopped = false;
        const beat = async () => {
            try {
                await this.#http.call("POST /tasks/{id}/heartbeat", {
                    path: { id: task.id },
                    body: {
                        lease_token: task.leaseToken,
                        lease: duration(this.leaseSeconds * 1000),
                        ...(task.reportedProgress !== undefined ? { progress: task.reportedProgress } : {}),
                    },
                    idempotent: true,
                    // An answer after the lease ran out is no use.
                    timeoutMs: Math.max(1000, this.leaseSeconds * 1000),
                });
            } catch (e) {
                if (stopped) return; // the attempt has ended meanwhile
                if (isLeaseLost(e)) {
                    this.#log(`${task.id}: ${e.detail}`);
                    task.controller.abort(new LeaseLost(e.status, e.code, e.detail, e.operation));
                    return;
                }
                // weir unreachable: the next beat tries again.
                this.#log(`${task.id}: heartbeat failed (${describe(e)})`);
            }
            if (!stopped) timer = setTimeout(beat, this.heartbeatMs);
        };
        timer = setTimeout(beat, this.heartbeatMs);
        return {
            stop() {
                stopped = true;
                clearTimeout(timer);
            },
        };
    }

    async #report(task: Task, outcome: { what: "complete"; body: CompleteRequest } | { what: "fail"; body: FailRequest }): Promise<void> {
        const op = outcome.what === "complete" ? "POST /tasks/{id}/complete" as const : "POST /tasks/{id}/fail" as const;
        for (const pause of [200, 1000, 3000, undefined]) {
            try {
                await this.#http.call(op, { path: { id: task.id }, body: outcome.body, idempotent: true });
                if (outcome.what === "complete") this.processed += 1;
                else this.failed += 1;
                return;
            } catch (e) {
                if (isLeaseLost(e)) {
                    this.#log(`${task.id}: lease lost; its ${outcome.what} is dropped`);
                    return;
                }
                const again = pause !== undefined && (e instanceof WeirConnectionError || (e instanceof WeirError && e.status >= 500));
                if (!again) {
                    // The lease lapses and weir runs the task again: never lost.
                    this.#log(`${task.id}: ${outcome.what} failed (${describe(e)})`);
                    return;
                }
                await sleep(pause);
            }
        }
    }
}

function failure(task: Task, e: unknown): FailRequest {
    if (e instanceof Permanent) return { lease_token: task.leaseToken, error: e.message, retry: false };
    if (e instanceof Retry) {
        return {
            lease_token: task.leaseToken,
            error: e.message,
            retry: true,
            ...(e.afterSeconds !== undefined ? { retry_after: duration(e.afterSeconds * 1000) } : {}),
        };
    }
    const error = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { lease_token: task.leaseToken, error, retry: true };
}

function isLeaseLost(e: unknown): e is WeirError {
    return e instanceof WeirError && e.code === "lease_lost";
}

function describe(e: unknown): string {
    return e instanceof Error ? e.message : String(e);
}
