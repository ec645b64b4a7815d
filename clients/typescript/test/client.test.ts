// The submitting client against a private `weir up`: tasks, workflows,
// events, errors, Retry-After; every answer checked against its route's
// schema in /openapi.json.

import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import type { Weir } from "../scripts/weir-up.js";
import {
    chain,
    chord,
    Client,
    group,
    isCached,
    step,
    TaskFailedError,
    Transport,
    WeirError,
    type ResponseInfo,
} from "../src/index.js";
import { AnswerChecker, up } from "./support.js";

let weir: Weir;
let checker: AnswerChecker;
let client: Client;

before(async () => {
    weir = await up();
    checker = await AnswerChecker.load(weir.url);
    client = new Client(weir.url, { onResponse: checker.observe });
});

after(async () => {
    await weir?.stop();
});

const md5 = (s: string) => createHash("md5").update(s).digest("hex");
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

test("submit md5 and wait: the worker's result is the md5; the same input again comes from the cache", { timeout: 60_000 }, async () => {
    const input = `ts-client-${randomUUID()}`;
    const accepted = await client.submit("md5", { string: input });
    assert.ok(!isCached(accepted), "a fresh input is queued");
    assert.equal(accepted.type, "md5");
    assert.ok(["queued", "running", "succeeded"].includes(accepted.status), accepted.status);
    const task = await client.wait(accepted.task_id, { timeoutMs: 30_000 });
    assert.equal(task.status, "succeeded", JSON.stringify(task));
    assert.deepEqual(task.result, { md5: md5(input) });
    assert.equal(task.attempts, 1);
    assert.equal(task.id, accepted.task_id);
    assert.deepEqual(await client.result(accepted), { md5: md5(input) });

    const again = await client.submit("md5", { string: input });
    assert.ok(isCached(again), `cached: ${JSON.stringify(again)}`);
    assert.equal(again.source, "cache");
    assert.deepEqual(await client.result(again), { md5: md5(input) });

    const hashed = await client.hash("sha256", { string: input });
    assert.deepEqual(await client.result(hashed, { timeoutMs: 30_000 }), { sha256: sha256(input) });
});

test("a task that ends dead: wait returns it, result throws TaskFailedError", { timeout: 60_000 }, async () => {
    const accepted = await client.submit("flaky", { fail_times: 5 }, { max_attempts: 1 });
    assert.ok(!isCached(accepted));
    const task = await client.wait(accepted, { timeoutMs: 30_000 });
    assert.equal(task.status, "dead");
    assert.equal(task.errors.length, 1);
    await assert.rejects(client.result(accepted), (e: unknown) => e instanceof TaskFailedError && e.task.status === "dead");
});

test("a workflow of two steps in a chain waits to succeeded, the second after the first", { timeout: 60_000 }, async () => {
    const a = `wf-a-${randomUUID()}`;
    const b = `wf-b-${randomUUID()}`;
    const accepted = await client.workflow(
        chain(step("md5", { string: a }, { id: "first" }), step("sha256", { string: b }, { id: "second" })),
        { name: "ts-chain" },
    );
    assert.equal(accepted.status, "running");
    assert.deepEqual(Object.keys(accepted.steps).sort(), ["first", "second"]);
    const workflow = await client.waitWorkflow(accepted.workflow_id, { timeoutMs: 30_000 });
    assert.equal(workflow.status, "succeeded", JSON.stringify(workflow));
    assert.equal(workflow.name, "ts-chain");
    assert.equal(workflow.steps.length, 2);
    const first = workflow.steps.find((s) => s.id === "first")!;
    const second = workflow.steps.find((s) => s.id === "second")!;
    assert.deepEqual(first.result, { md5: md5(a) });
    assert.deepEqual(second.result, { sha256: sha256(b) });
    assert.deepEqual(second.depends_on, ["first"]);
    assert.ok(Date.parse(second.started_at!) >= Date.parse(first.completed_at!), "the second step ran after the first");
    assert.equal((await client.getWorkflow(accepted.workflow_id)).status, "succeeded");
});

test("a chord's callback gets its parents' results; a cycle is 400 workflow_cycle", { timeout: 60_000 }, async () => {
    const words = ["x", "y", "z"].map((w) => `${w}-${randomUUID()}`);
    const accepted = await client.workflow(chord(
        group(...words.map((w, i) => step("md5", { string: w }, { id: `hash-${i}` }))),
        step("noop", {}, { id: "report" }),
    ));
    const workflow = await client.waitWorkflow(accepted.workflow_id, { timeoutMs: 30_000 });
    assert.equal(workflow.status, "succeeded", JSON.stringify(workflow));
    const report = await client.get(accepted.steps["report"]!);
    assert.deepEqual(report.input["parents"], {
        "hash-0": { md5: md5(words[0]!) },
        "hash-1": { md5: md5(words[1]!) },
        "hash-2": { md5: md5(words[2]!) },
    });

    const a = step("noop", {}, { id: "a" });
    const b = step("noop", {}, { id: "b" });
    a.dependsOn.push(b);
    b.dependsOn.push(a);
    await assert.rejects(client.workflow([a, b]), (e: unknown) =>
        e instanceof WeirError && e.status === 400 && e.code === "workflow_cycle");
});

test("events: one, many and NDJSON are accepted; a resent id is stored once", { timeout: 60_000 }, async () => {
    const run = randomUUID();
    assert.deepEqual(await client.writeEvents({ id: `${run}-1`, level: "info" }), { accepted: 1 });
    assert.deepEqual(await client.writeEvents([{ id: `${run}-2` }, { id: `${run}-3`, level: "warn" }]), { accepted: 2 });
    assert.deepEqual(await client.writeEvents([{ id: `${run}-4` }, { id: `${run}-5` }], { ndjson: true }), { accepted: 2 });
    const latest = await client.messages(1000);
    const ids = new Set(latest.messages.map((m) => m.id));
    for (let i = 1; i <= 5; i++) assert.ok(ids.has(`${run}-${i}`), `event ${run}-${i} stored`);
    const before = latest.messages.length;
    assert.deepEqual(await client.writeEvents({ id: `${run}-1`, level: "info" }), { accepted: 1 });
    assert.equal((await client.messages(1000)).messages.length, before, "the resent event is not stored twice");
    await assert.rejects(client.writeEvents({ id: { not: "a string or integer" } }), (e: unknown) =>
        e instanceof WeirError && e.status === 400 && e.code === "invalid_event_id");
});

test("errors are WeirError with weir's status, code and message", { timeout: 30_000 }, async () => {
    await assert.rejects(client.get(randomUUID()), (e: unknown) => {
        assert.ok(e instanceof WeirError);
        assert.equal(e.status, 404);
        assert.equal(e.code, "task_not_found");
        assert.equal(e.operation, "GET /tasks/{id}");
        assert.match(e.detail, /no task/);
        return true;
    });
    await assert.rejects(client.submit("no_such_type", {}), (e: unknown) =>
        e instanceof WeirError && e.status === 400 && e.code === "unknown_task_type");
    await assert.rejects(client.submit("md5", {}), (e: unknown) =>
        e instanceof WeirError && e.status === 400 && e.code === "invalid_input");
    await assert.rejects(client.getWorkflow(randomUUID()), (e: unknown) =>
        e instanceof WeirError && e.status === 404 && e.code === "workflow_not_found");
});

test("a 429 is retried after its Retry-After; past the retries or the longest wait it is thrown", { timeout: 60_000 }, async () => {
    // weir's lb limits GET /messages/count to 1/s here (support.ts).
    const seen: ResponseInfo[] = [];
    const patient = new Client(weir.url, { retries: 3, onResponse: (i) => seen.push(i) });
    const started = Date.now();
    for (let i = 0; i < 3; i++) assert.equal(typeof (await patient.messageCount()).count, "number");
    const limited = seen.filter((i) => i.status === 429);
    assert.ok(limited.length >= 1, `a 429 came: ${seen.map((i) => i.status)}`);
    for (const i of limited) assert.equal(i.headers.get("retry-after"), "1");
    assert.equal(seen.filter((i) => i.status === 200).length, 3);
    // Three calls through a 1/s limit: at least one Retry-After of 1 s was waited.
    assert.ok(Date.now() - started >= 900, `waited ${Date.now() - started} ms`);

    // No retries left, or a Retry-After longer than the client waits out:
    // the 429 is thrown as it came, and nothing is sent after it.
    for (const options of [{ retries: 0 }, { retries: 5, maxRetryAfterMs: 100 }]) {
        const answers: number[] = [];
        const c = new Client(weir.url, { ...options, onResponse: (i) => answers.push(i.status) });
        let calls = 0;
        await assert.rejects(async () => {
            // One call may fall on a fresh second; the next is over the limit.
            for (let i = 0; i < 3; i++, calls++) await c.messageCount();
        }, (e: unknown) => {
            assert.ok(e instanceof WeirError);
            assert.equal(e.status, 429);
            assert.equal(e.code, "rate_limited");
            assert.equal(e.retryAfterMs, 1000);
            return true;
        });
        assert.equal(answers.length, calls + 1, `one answer per call, no retry: ${answers}`);
        assert.equal(answers.at(-1), 429);
    }
});

test("a 503 with Retry-After is retried a bounded number of times (Retry-After as seconds or a date)", { timeout: 30_000 }, async () => {
    let calls = 0;
    let failFirst = 2;
    let retryAfter = "0";
    const server: Server = createServer((req, res) => {
        calls += 1;
        if (calls <= failFirst) {
            res.writeHead(503, { "content-type": "application/json", "retry-after": retryAfter });
            res.end(JSON.stringify({ error: { code: "database_busy", message: "the database is busy" } }));
            return;
        }
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ count: 7 }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
        assert.deepEqual(await new Transport(url, { retries: 2 }).call("GET /messages/count", {}), { count: 7 });
        assert.equal(calls, 3, "two 503s, then the answer");

        calls = 0;
        failFirst = 100;
        await assert.rejects(new Transport(url, { retries: 2 }).call("GET /messages/count", {}), (e: unknown) =>
            e instanceof WeirError && e.status === 503 && e.code === "database_busy" && e.retryAfterMs === 0);
        assert.equal(calls, 3, "the first try and two retries");

        calls = 0;
        failFirst = 1;
        retryAfter = new Date(Date.now() + 2000).toUTCString(); // whole seconds: 1 to 2 s from now
        const t0 = Date.now();
        assert.deepEqual(await new Transport(url, { retries: 1 }).call("GET /messages/count", {}), { count: 7 });
        assert.equal(calls, 2);
        assert.ok(Date.now() - t0 >= 800, `an HTTP-date Retry-After is waited out (${Date.now() - t0} ms)`);
    } finally {
        await new Promise((resolve) => server.close(resolve));
    }
});

test("every answer matched its route's schema in /openapi.json", () => {
    assert.ok(checker.checked >= 20, `answers checked: ${checker.checked}`);
    assert.deepEqual(checker.findings, []);
});
