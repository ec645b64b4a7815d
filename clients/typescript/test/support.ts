// What the tests share: a private `weir up` with external task types and a
// worker token, polling with a deadline, and a check of every answer
// against its route's schema in weir's /openapi.json.

import type { OpenApi, Schema } from "../scripts/generate.js";
import { fetchSpec } from "../scripts/generate.js";
import { startWeir, type Weir } from "../scripts/weir-up.js";
import type { ResponseInfo } from "../src/index.js";

export const TOKEN = "ts-worker-token";

/** The external types the tests' workers run, one per test so none takes another's task. */
export const CONFIG = `
[task_types.word_count]
handler = "external"
max_attempts = 2
input_schema = { type = "object", required = ["text"] }

[task_types.ts_flaky]
handler = "external"
max_attempts = 3
retry_backoff = "10ms:100ms"

[task_types.ts_long]
handler = "external"
max_attempts = 3

[task_types.ts_unbeaten]
handler = "external"
max_attempts = 3

[task_types.ts_drain]
handler = "external"
`;

/**
 * `weir up` for a test file: the types above, the worker token, lapsed
 * leases looked for every 200 ms (so a lease of 1 s lapses within a test),
 * and `GET /messages/count` limited to 1/s (a 429 with Retry-After to honour).
 */
export function up(): Promise<Weir> {
    return startWeir({
        config: CONFIG,
        workerToken: TOKEN,
        args: ["--rescue-interval", "200ms", "--rate-limit-route", "GET /messages/count=1:1"],
    });
}

/** Calls `read` until `done` holds of its value; throws after `timeoutMs`. */
export async function eventually<T>(
    what: string,
    read: () => Promise<T> | T,
    done: (value: T) => boolean,
    timeoutMs = 30_000,
): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let pause = 10;
    for (;;) {
        const value = await read();
        if (done(value)) return value;
        if (Date.now() > deadline) {
            throw new Error(`${what}: not within ${timeoutMs} ms; last: ${JSON.stringify(value)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, pause));
        pause = Math.min(pause * 2, 200);
    }
}

/**
 * Checks answers against the document: each answer's body against its
 * route's schema for that status. Stricter than JSON Schema in one way:
 * a field the schema does not declare is a finding (the TypeScript types
 * would not have it).
 */
export class AnswerChecker {
    readonly findings: string[] = [];
    checked = 0;

    private constructor(private readonly spec: OpenApi) {}

    static async load(url: string): Promise<AnswerChecker> {
        return new AnswerChecker(await fetchSpec(url));
    }

    /** For `onResponse`. */
    readonly observe = (info: ResponseInfo): void => {
        const space = info.operation.indexOf(" ");
        const method = info.operation.slice(0, space).toLowerCase();
        const path = info.operation.slice(space + 1);
        const op = this.spec.paths[path]?.[method];
        if (!op) {
            this.findings.push(`${info.operation}: not in the document`);
            return;
        }
        const response = op.responses?.[String(info.status)];
        if (!response) {
            // The lb's own refusals (429, 502) are not the API node's to document.
            if (info.status < 300) this.findings.push(`${info.operation}: ${info.status} is not documented`);
            return;
        }
        const content = response.content?.["application/json"];
        if (!content?.schema) return;
        this.checked += 1;
        this.check(content.schema, info.body, `${info.operation} ${info.status}`);
    };

    private resolve(s: Schema): Schema | undefined {
        if (!s.$ref) return s;
        const name = s.$ref.replace("#/components/schemas/", "");
        return this.spec.components?.schemas?.[name];
    }

    /** The findings of `value` against `schema`, without recording them. */
    private errors(schema: Schema, value: unknown, at: string): string[] {
        const saved = this.findings.length;
        this.check(schema, value, at);
        return this.findings.splice(saved);
    }

    private check(schema: Schema, value: unknown, at: string): void {
        const s = this.resolve(schema);
        if (!s) return; // a dangling $ref: nothing to check against
        if (s.oneOf || s.anyOf) {
            const members = (s.oneOf ?? s.anyOf)!;
            const results = members.map((m) => this.errors(m, value, at));
            if (!results.some((r) => r.length === 0)) {
                this.findings.push(`${at}: matches no member of oneOf/anyOf (${results.map((r) => r.join("; ")).join(" | ")})`);
            }
            return;
        }
        if (s.allOf) {
            for (const m of s.allOf) this.check(m, value, at);
            return;
        }
        if (s.enum && !s.enum.includes(value)) {
            this.findings.push(`${at}: ${JSON.stringify(value)} is not one of ${JSON.stringify(s.enum)}`);
            return;
        }
        const types = s.type === undefined ? undefined : Array.isArray(s.type) ? s.type : [s.type];
        if (types && !types.some((t) => isType(t, value))) {
            this.findings.push(`${at}: ${JSON.stringify(value)?.slice(0, 80)} is not ${types.join(" or ")}`);
            return;
        }
        if (Array.isArray(value) && s.items) {
            value.forEach((v, i) => this.check(s.items!, v, `${at}[${i}]`));
        } else if (isObject(value) && (s.properties || s.additionalProperties !== undefined)) {
            const declared = s.properties ?? {};
            for (const name of s.required ?? []) {
                if (!(name in value)) this.findings.push(`${at}: required ${name} is missing`);
            }
            for (const [name, v] of Object.entries(value)) {
                const p = declared[name];
                if (p) this.check(p, v, `${at}.${name}`);
                else if (s.additionalProperties && typeof s.additionalProperties === "object") {
                    this.check(s.additionalProperties, v, `${at}.${name}`);
                } else if (s.additionalProperties !== true) {
                    this.findings.push(`${at}: ${name} is not declared`);
                }
            }
        }
    }
}

function isObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isType(type: string, v: unknown): boolean {
    switch (type) {
        case "null":
            return v === null;
        case "string":
            return typeof v === "string";
        case "boolean":
            return typeof v === "boolean";
        case "integer":
            return Number.isInteger(v);
        case "number":
            return typeof v === "number";
        case "array":
            return Array.isArray(v);
        case "object":
            return isObject(v);
        default:
            return true;
    }
}
