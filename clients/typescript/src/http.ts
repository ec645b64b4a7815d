// One HTTP exchange with weir, typed by the route's entry in the
// generated `Operations`: errors as `WeirError`, 429/503/507 retried after
// their Retry-After a bounded number of times, connection failures retried
// when resending cannot do a thing twice.

import type { ErrorBody, Operations } from "./generated.js";

/** Every route weir serves, as `"METHOD /path/{param}"`. */
export type Operation = keyof Operations;

type Responses<K extends Operation> = Operations[K]["responses"];
type SuccessStatus = 200 | 201 | 202 | 203 | 204;

/** The body of any success (2xx) answer of route `K`. */
export type Success<K extends Operation> = Responses<K>[Extract<keyof Responses<K>, SuccessStatus>];

/** weir answered with an error (`{"error":{"code","message"}}`) and a status. */
export class WeirError extends Error {
    override readonly name: string = "WeirError";
    /** The HTTP status. */
    readonly status: number;
    /** weir's stable, machine-readable code: `task_not_found`, `lease_lost`, … */
    readonly code: string;
    /** How long weir asked to wait before retrying (Retry-After), if it did. */
    readonly retryAfterMs: number | undefined;
    /** The route, as `"GET /tasks/{id}"`. */
    readonly operation: string;

    constructor(status: number, code: string, message: string, operation: string, retryAfterMs?: number) {
        super(`${status} ${code}: ${message}`);
        this.status = status;
        this.code = code;
        this.operation = operation;
        this.retryAfterMs = retryAfterMs;
    }

    /** weir's own message, without the status and code. */
    get detail(): string {
        return this.message.slice(`${this.status} ${this.code}: `.length);
    }
}

/** No answer from weir: it could not be reached, or took longer than the timeout. */
export class WeirConnectionError extends Error {
    override readonly name: string = "WeirConnectionError";
    readonly operation: string;

    constructor(operation: string, cause: unknown) {
        super(`${operation}: ${describe(cause)}`, { cause });
        this.operation = operation;
    }
}

/** What `onResponse` sees of every answer (retried ones included). */
export interface ResponseInfo {
    operation: Operation;
    /** The path sent, parameters filled in, query included. */
    url: string;
    status: number;
    headers: Headers;
    /** The parsed JSON (or text) of the answer. */
    body: unknown;
}

export interface TransportOptions {
    /** Sent as `Authorization: Bearer …` (an API key, or a worker token). */
    token?: string | undefined;
    /** Longest wait for one answer (default 30 s). */
    timeoutMs?: number | undefined;
    /** Retries of a 429, 503 or 507, and of connection failures (default 5). */
    retries?: number | undefined;
    /**
     * A Retry-After longer than this is not waited out: the error is
     * thrown at once, its `retryAfterMs` set (default 60 s).
     */
    maxRetryAfterMs?: number | undefined;
    /** Called with every answer; for logging and metrics. */
    onResponse?: ((info: ResponseInfo) => void) | undefined;
}

type PathArgs<K extends Operation> = keyof Operations[K]["path"] extends never
    ? { path?: undefined }
    : { path: Operations[K]["path"] };

type BodyArgs<K extends Operation> = undefined extends Operations[K]["body"]
    ? { body?: Operations[K]["body"] }
    : { body: Operations[K]["body"] };

/** A body sent as is instead of `body` as JSON (NDJSON events). */
interface RawBody {
    body?: undefined;
    raw: { contentType: string; data: string };
}

/** One call: the route's parameters and body, and how to send them. */
export type CallOptions<K extends Operation> = PathArgs<K> & (BodyArgs<K> | RawBody) & {
    query?: Operations[K]["query"];
    headers?: Record<string, string>;
    timeoutMs?: number;
    /**
     * Sending it twice changes nothing (an idempotency key, a fenced
     * report): connection failures after sending are retried too.
     */
    idempotent?: boolean;
    signal?: AbortSignal;
};

export interface Answer<K extends Operation> {
    status: number;
    headers: Headers;
    body: Success<K>;
}

const RETRIED = new Set([429, 503, 507]);

/** The HTTP client under `Client` and `Worker`. */
export class Transport {
    readonly baseUrl: string;
    readonly token: string | undefined;
    readonly timeoutMs: number;
    readonly retries: number;
    readonly maxRetryAfterMs: number;
    readonly onResponse: ((info: ResponseInfo) => void) | undefined;

    constructor(baseUrl: string, options: TransportOptions = {}) {
        const url = new URL(baseUrl);
        if (url.protocol !== "http:" && url.protocol !== "https:") {
            throw new TypeError(`baseUrl must be http:// or https://, not ${JSON.stringify(baseUrl)}`);
        }
        this.baseUrl = baseUrl.replace(/\/+$/, "");
        this.token = options.token;
        this.timeoutMs = options.timeoutMs ?? 30_000;
        this.retries = options.retries ?? 5;
        this.maxRetryAfterMs = options.maxRetryAfterMs ?? 60_000;
        this.onResponse = options.onResponse;
    }

    /** Calls route `op`; the success answer's body, or a thrown `WeirError`. */
    async call<K extends Operation>(op: K, options: CallOptions<K>): Promise<Success<K>> {
        return (await this.exchange(op, options)).body;
    }

    /** Like `call`, with the status and headers. */
    async exchange<K extends Operation>(op: K, options: CallOptions<K>): Promise<Answer<K>> {
        const space = op.indexOf(" ");
        const method = op.slice(0, space);
        const url = this.url(op.slice(space + 1), options.path as Record<string, string> | undefined,
            options.query as Record<string, unknown> | undefined);
        const headers: Record<string, string> = { accept: "application/json" };
        let data: string | undefined;
        if ("raw" in options && options.raw) {
            headers["content-type"] = options.raw.contentType;
            data = options.raw.data;
        } else if (options.body !== undefined) {
            headers["content-type"] = "application/json";
            data = JSON.stringify(options.body);
        }
        if (this.token) headers["authorization"] = `Bearer ${this.token}`;
        Object.assign(headers, options.headers);
        const idempotent = options.idempotent ?? (method === "GET" || method === "PUT" || method === "DELETE"
            || Object.keys(headers).some((h) => h.toLowerCase() === "idempotency-key"));
        for (let attempt = 0; ; attempt++) {
            let response: Response;
            let body: unknown;
            const limit = deadline(options.timeoutMs ?? this.timeoutMs, options.signal);
            try {
                response = await fetch(this.baseUrl + url, { method, headers, body: data ?? null, signal: limit.signal });
                body = await parse(response);
            } catch (e) {
                limit.dispose();
                if (options.signal?.aborted) throw options.signal.reason;
                // Not sent at all (refused, no such host): always safe again.
                // Sent, then no answer: again only if a repeat changes nothing.
                if (attempt < this.retries && (notSent(e) || idempotent)) {
                    await sleep(backoffMs(attempt), options.signal);
                    continue;
                }
                throw new WeirConnectionError(op, e);
            }
            limit.dispose();
            this.onResponse?.({ operation: op, url, status: response.status, headers: response.headers, body });
            if (response.ok) {
                return { status: response.status, headers: response.headers, body: body as Success<K> };
            }
            const retryAfter = retryAfterMs(response.headers.get("retry-after"));
            if (RETRIED.has(response.status) && attempt < this.retries
                && (retryAfter === undefined || retryAfter <= this.maxRetryAfterMs)) {
                await sleep(retryAfter ?? backoffMs(attempt), options.signal);
                continue;
            }
            throw errorFrom(op, response.status, body, retryAfter);
        }
    }

    private url(template: string, path: Record<string, string> | undefined, query: Record<string, unknown> | undefined): string {
        let url = template.replace(/\{([^}]+)\}/g, (_, name: string) => {
            const value = path?.[name];
            if (value === undefined) throw new TypeError(`${template}: path parameter ${name} is missing`);
            return encodeURIComponent(value);
        });
        const search = new URLSearchParams();
        for (const [name, value] of Object.entries(query ?? {})) {
            if (value !== undefined && value !== null) search.append(name, String(value));
        }
        const q = search.toString();
        if (q) url += `?${q}`;
        return url;
    }
}

/** A signal aborted after `ms`, or when `outer` aborts (Node 20.0 has no AbortSignal.any). */
function deadline(ms: number, outer: AbortSignal | undefined): { signal: AbortSignal; dispose(): void } {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException("no answer in time", "TimeoutError")), ms);
    const abort = () => controller.abort(outer!.reason);
    if (outer?.aborted) abort();
    else outer?.addEventListener("abort", abort, { once: true });
    return {
        signal: controller.signal,
        dispose() {
            clearTimeout(timer);
            outer?.removeEventListener("abort", abort);
        },
    };
}

async function parse(response: Response): Promise<unknown> {
    const text = await response.text();
    if (!text) return undefined;
    const type = response.headers.get("content-type") ?? "";
    if (type.includes("json")) {
        try {
            return JSON.parse(text);
        } catch {
            return text;
        }
    }
    return text;
}

function errorFrom(op: string, status: number, body: unknown, retryAfter: number | undefined): WeirError {
    const error = (body as Partial<ErrorBody> | undefined)?.error;
    if (error && typeof error.code === "string" && typeof error.message === "string") {
        return new WeirError(status, error.code, error.message, op, retryAfter);
    }
    const text = typeof body === "string" ? body : JSON.stringify(body) ?? "";
    return new WeirError(status, "http_error", text.slice(0, 200) || `HTTP ${status}`, op, retryAfter);
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function retryAfterMs(header: string | null): number | undefined {
    if (header === null || header.trim() === "") return undefined;
    const seconds = Number(header.trim());
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const at = Date.parse(header);
    return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Milliseconds as the API's duration text (`"1500ms"`). */
export function duration(ms: number): string {
    return `${Math.max(0, Math.round(ms))}ms`;
}

/** Full jitter under a ceiling doubling from 200 ms to 10 s. */
export function backoffMs(attempt: number, baseMs = 200, capMs = 10_000): number {
    return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const done = () => {
            signal?.removeEventListener("abort", abort);
            resolve();
        };
        const timer = setTimeout(done, ms);
        const abort = () => {
            clearTimeout(timer);
            reject(signal!.reason);
        };
        signal?.addEventListener("abort", abort, { once: true });
    });
}

function causeCode(e: unknown): string | undefined {
    let at: unknown = e;
    for (let depth = 0; at && depth < 4; depth++) {
        const code = (at as { code?: unknown }).code;
        if (typeof code === "string") return code;
        at = (at as { cause?: unknown }).cause;
    }
    return undefined;
}

/** The request never left: refused, or the host not found. */
function notSent(e: unknown): boolean {
    const code = causeCode(e);
    return code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN" || code === "UND_ERR_CONNECT_TIMEOUT";
}

function describe(e: unknown): string {
    if (e instanceof Error) {
        if (e.name === "TimeoutError") return "no answer before the timeout";
        const code = causeCode(e);
        const cause = e.cause instanceof Error ? e.cause.message : undefined;
        return [e.message, cause, code].filter(Boolean).join(": ");
    }
    return String(e);
}
