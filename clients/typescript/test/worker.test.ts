// The external worker loop against a private `weir up`: results stored, a
// permanent failure dead at once, a retryable one retried, heartbeats
// holding a task past its lease (and the lease lapsing without them), and
// a drain on SIGTERM in a worker process of its own.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { stopChild, type Weir } from "../scripts/weir-up.js";
import { Client, isCached, WeirError, type TaskAccepted } from "../src/index.js";
import { LeaseLost, Permanent, Retry, Worker } from "../src/worker.js";
import { AnswerChecker, eventually, TOKEN, up } from "./support.js";

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

async function submit(type: string, input: Record<string, unknown>): Promise<string> {
    const answer = await client.submit(type, input);
    assert.ok(!isCached(answer));
    return (answer as TaskAccepted).task_id;
}

/** What the worker logged, kept for assertions and shown on failure. */
function logs(): { lines: string[]; log: (line: string) => void } {
    const lines: string[] = [];
    return { lines, log: (line) => lines.push(line) };
}

test("an external worker runs word_count: results stored, a permanent failure dead after one attempt", { timeout: 60_000 }, async () => {
    const ids = [
        await submit("word_count", { text: "the quick brown fox" }),
        await submit("word_count", { text: "hello" }),
        await submit("word_count", { text: 7 }),
    ];
    const { lines, log } = logs();
    const worker = new Worker(weir.url, { token: TOKEN, workerId: "ts-1", waitSeconds: 1, log, onResponse: checker.observe });
    worker.task("word_count", (input, task) => {
        const text = input["text"];
        if (typeof text !== "string") throw new Permanent("input.text must be a string");
        task.progress(50);
        const words = text.split(/\s+/).filter(Boolean);
        return { words: words.length, longest: words.reduce((a, b) => (b.length > a.length ? b : a), "") };
    });
    const counts = await worker.run({ maxTasks: 3, handleSignals: false });
    assert.deepEqual(counts, { processed: 2, failed: 1 }, lines.join("\n"));
    const [fox, hello, seven] = await Promise.all(ids.map((id) => client.get(id)));
    assert.equal(fox!.status, "succeeded", JSON.stringify(fox));
    assert.deepEqual(fox!.result, { words: 4, longest: "quick" });
    assert.equal(fox!.worker_id, "ts-1");
    assert.equal(fox!.attempts, 1);
    assert.deepEqual(hello!.result, { words: 1, longest: "hello" });
    assert.equal(seven!.status, "dead", JSON.stringify(seven));
    assert.equal(seven!.attempts, 1, "a permanent failure is not retried");
    assert.match(seven!.error ?? "", /text must be a string/);
    const listed = (await client.workers()).workers.find((w) => w.id === "ts-1");
    assert.ok(listed, "the worker is listed");
    assert.deepEqual(listed.task_types, ["word_count"]);
});

test("a task's trace context reaches the handler as weir was given it", { timeout: 60_000 }, async () => {
    const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    const submitted = await fetch(`${weir.url}/tasks`, {
        method: "POST",
        headers: { "content-type": "application/json", traceparent, tracestate: "vendor=abc" },
        body: JSON.stringify({ type: "word_count", input: { text: "traced" } }),
    });
    assert.equal(submitted.status, 202);
    const id = ((await submitted.json()) as TaskAccepted).task_id;
    const { lines, log } = logs();
    const worker = new Worker(weir.url, { token: TOKEN, workerId: "ts-trace", waitSeconds: 1, log, onResponse: checker.observe });
    worker.task("word_count", (_input, task) => ({ traceparent: task.traceparent, tracestate: task.tracestate }));
    const counts = await worker.run({ maxTasks: 1, handleSignals: false });
    assert.deepEqual(counts, { processed: 1, failed: 0 }, lines.join("\n"));
    const done = await client.get(id);
    assert.deepEqual(done!.result, { traceparent, tracestate: "vendor=abc" });
});

test("a retryable failure is retried: the second attempt succeeds", { timeout: 60_000 }, async () => {
    const id = await submit("ts_flaky", { n: 1 });
    const { lines, log } = logs();
    const worker = new Worker(weir.url, { token: TOKEN, workerId: "ts-flaky", waitSeconds: 1, log, onResponse: checker.observe });
    worker.task("ts_flaky", (_input, task) => {
        if (task.attempt === 1) throw new Retry("not yet", { afterSeconds: 0.05 });
        return { attempt: task.attempt };
    });
    const counts = await worker.run({ maxTasks: 2, handleSignals: false });
    assert.deepEqual(counts, { processed: 1, failed: 1 }, lines.join("\n"));
    const task = await client.get(id);
    assert.equal(task.status, "succeeded", JSON.stringify(task));
    assert.deepEqual(task.result, { attempt: 2 });
    assert.equal(task.errors.length, 1);
    assert.equal(task.errors[0]!.error, "not yet");
});

test("heartbeats keep a task running past its 2 s lease, with its progress", { timeout: 60_000 }, async () => {
    const id = await submit("ts_long", {});
    const { lines, log } = logs();
    const worker = new Worker(weir.url, {
        token: TOKEN, workerId: "ts-long", waitSeconds: 1, leaseSeconds: 2, heartbeatMs: 250, log, onResponse: checker.observe,
    });
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
        release = resolve;
    });
    worker.task("ts_long", async (_input, task) => {
        task.progress(40);
        await released;
        return { aborted: task.signal.aborted };
    });
    const running = worker.run({ maxTasks: 1, handleSignals: false });
    try {
        // The lease is 2 s and lapsed leases are rescued every 200 ms: held
        // for three leases, the task stays this attempt's only by heartbeats.
        const started = await eventually("the task runs", () => client.get(id), (t) => t.status === "running");
        const seen = await eventually("three leases pass with progress 40 shown", () => client.get(id),
            (t) => t.status !== "running" || (t.progress === 40 && Date.now() - Date.parse(started.started_at!) > 6000));
        assert.equal(seen.status, "running", JSON.stringify(seen));
        assert.equal(seen.attempts, 1);
        assert.ok(Date.parse(seen.lease_expires_at!) > Date.parse(started.lease_expires_at!), "the lease was extended");
    } finally {
        release();
    }
    assert.deepEqual(await running, { processed: 1, failed: 0 }, lines.join("\n"));
    const task = await client.get(id);
    assert.equal(task.status, "succeeded", JSON.stringify(task));
    assert.deepEqual(task.result, { aborted: false });
    assert.equal(task.attempts, 1);
    assert.deepEqual(task.errors, []);
});

test("without heartbeats the same lease lapses: the task is rescued and a late report is lease_lost", { timeout: 60_000 }, async () => {
    const id = await submit("ts_unbeaten", {});
    const worker = new Worker(weir.url, { token: TOKEN, workerId: "ts-unbeaten", waitSeconds: 5, leaseSeconds: 1 });
    worker.task("ts_unbeaten", () => ({}));
    const [claimed] = await worker.claim(1);
    assert.ok(claimed, "claimed");
    assert.equal(claimed.id, id);
    const rescued = await eventually("the lapsed lease is rescued", () => client.get(id), (t) => t.status !== "running");
    assert.equal(rescued.status, "queued", JSON.stringify(rescued));
    assert.match(rescued.error ?? "", /lease expired/);
    const late = new Client(weir.url, { apiKey: TOKEN });
    await assert.rejects(
        late.http.call("POST /tasks/{id}/complete", { path: { id }, body: { lease_token: claimed.leaseToken, result: {} } }),
        (e: unknown) => e instanceof WeirError && e.status === 409 && e.code === "lease_lost",
    );
    await client.cancel(id);
    assert.ok(new LeaseLost(409, "lease_lost", "x", "op") instanceof WeirError);
});

test("SIGTERM drains: no more claims, the running task completes, the process exits 0", { timeout: 90_000 }, async () => {
    const first = await submit("ts_drain", { n: 1 });
    const script = fileURLToPath(new URL("./fixtures/drain-worker.js", import.meta.url));
    const child = spawn(process.execPath, [script, weir.url, TOKEN, weir.dir], { stdio: ["ignore", "pipe", "pipe"] });
    try {
        const stdout: string[] = [];
        const stderr: string[] = [];
        createInterface({ input: child.stdout }).on("line", (l) => stdout.push(l));
        createInterface({ input: child.stderr }).on("line", (l) => stderr.push(l));
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
            child.once("exit", (code, signal) => resolve({ code, signal })));
        const output = () => `stdout:\n${stdout.join("\n")}\nstderr:\n${stderr.join("\n")}`;

        await eventually("the worker starts the task", () => stdout, (l) => l.includes(`started ${first}`), 30_000)
            .catch((e: Error) => assert.fail(`${e.message}\n${output()}`));
        child.kill("SIGTERM");
        await eventually("the worker stops claiming", () => stderr, (l) => l.some((x) => x.includes("stopped claiming")), 30_000)
            .catch((e: Error) => assert.fail(`${e.message}\n${output()}`));
        // Queued after the stop: this worker must leave it.
        const second = await submit("ts_drain", { n: 2 });
        assert.equal((await client.get(first)).status, "running", "still running while draining");
        writeFileSync(join(weir.dir, "release"), "");
        const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
        const { code, signal } = await exited;
        clearTimeout(deadline);
        assert.equal(signal, null, `exited by itself, not killed\n${output()}`);
        assert.equal(code, 0, output());
        assert.ok(stdout.includes("exited processed=1 failed=0"), output());
        const done = await client.get(first);
        assert.equal(done.status, "succeeded", JSON.stringify(done));
        assert.deepEqual(done.result, { drained: true, pid: child.pid, input: { n: 1 } });
        assert.equal(done.attempts, 1);
        assert.equal(done.worker_id, "ts-drain");
        const left = await client.get(second);
        assert.equal(left.status, "queued", "not claimed after SIGTERM");
        assert.equal(left.attempts, 0);
        await client.cancel(second);
    } finally {
        await stopChild(child, 5_000);
    }
});

test("every answer matched its route's schema in /openapi.json", () => {
    assert.ok(checker.checked >= 20, `answers checked: ${checker.checked}`);
    assert.deepEqual(checker.findings, []);
});
