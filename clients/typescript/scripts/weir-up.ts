// Starts a private `weir up` for the tests and for `npm run generate`: a
// temp data directory, the lb on a free port (`--listen 127.0.0.1:0`, the
// address read from what weir prints), one API node and one worker.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** The package's directory (this file runs from `dist/scripts/`). */
export const packageDir = fileURLToPath(new URL("../..", import.meta.url));

/** `WEIR_BIN`, else `../../target/debug/weir` from the package. */
export function weirBin(): string {
    return process.env["WEIR_BIN"] || join(packageDir, "..", "..", "target", "debug", "weir");
}

const SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

export interface UpOptions {
    /** weir.toml's text (`--config`). */
    config?: string;
    /** `--worker-token`. */
    workerToken?: string;
    /** More flags for `weir up`. */
    args?: string[];
    /** How long to wait for "ready" (default 60 s). */
    readyTimeoutMs?: number;
}

export interface Weir {
    /** The lb's URL, `http://127.0.0.1:PORT`. */
    url: string;
    dir: string;
    /** What weir wrote to stderr so far (its logs, at RUST_LOG=error). */
    stderr(): string;
    /** SIGTERM, then SIGKILL after `graceMs`; removes the temp directory. */
    stop(graceMs?: number): Promise<void>;
}

export async function startWeir(options: UpOptions = {}): Promise<Weir> {
    const dir = mkdtempSync(join(tmpdir(), "weir-ts-"));
    const args = ["up", "--listen", "127.0.0.1:0", "--data-dir", join(dir, "data"),
        "--api-nodes", "1", "--workers", "1"];
    if (options.config !== undefined) {
        const path = join(dir, "weir.toml");
        writeFileSync(path, options.config);
        args.push("--config", path);
    }
    if (options.workerToken !== undefined) {
        args.push("--worker-token", options.workerToken);
    }
    args.push(...(options.args ?? []));
    const bin = weirBin();
    const child = spawn(bin, args, {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, RUST_LOG: "error" },
    });
    let stderr = "";
    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
        stderr += chunk;
    });
    // A test process that ends, or is interrupted, must not leave weir running.
    const reap = () => {
        child.kill("SIGKILL");
        unhook();
    };
    const interrupted = (signal: NodeJS.Signals) => {
        reap();
        // Then the signal's own way out (unless someone else handles it).
        if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    const unhook = () => {
        process.off("exit", reap);
        for (const s of SIGNALS) process.off(s, interrupted);
    };
    process.on("exit", reap);
    for (const s of SIGNALS) process.on(s, interrupted);
    const removeAll = () => rmSync(dir, { recursive: true, force: true });
    let url: string;
    try {
        url = await readyUrl(child, options.readyTimeoutMs ?? 60_000, () => stderr, bin);
    } catch (e) {
        reap();
        removeAll();
        throw e;
    }
    return {
        url,
        dir,
        stderr: () => stderr,
        async stop(graceMs = 30_000) {
            await stopChild(child, graceMs);
            unhook();
            removeAll();
        },
    };
}

/** Reads weir's stdout until "ready", returning the lb's address. */
function readyUrl(child: ChildProcess, timeoutMs: number, stderr: () => string, bin: string): Promise<string> {
    return new Promise((resolve, reject) => {
        let url: string | undefined;
        const printed: string[] = [];
        const lines = createInterface({ input: child.stdout! });
        const fail = (why: string) => {
            clearTimeout(timer);
            lines.close();
            reject(new Error(`weir up (${bin}) ${why}\nstdout:\n${printed.join("\n")}\nstderr:\n${stderr()}`));
        };
        const timer = setTimeout(() => fail(`was not ready within ${timeoutMs} ms`), timeoutMs);
        child.once("error", (e) => fail(`could not start: ${e.message} (set WEIR_BIN to weir's binary)`));
        child.once("exit", (code, signal) => fail(`exited before it was ready (${code ?? signal})`));
        lines.on("line", (line) => {
            printed.push(line);
            const at = /lb listening on (http:\/\/\S+)/.exec(line);
            if (at) url = at[1];
            if (line.includes("ready;") && url) {
                clearTimeout(timer);
                child.removeAllListeners("exit");
                child.removeAllListeners("error");
                // Keep draining stdout so weir never blocks on a full pipe.
                lines.removeAllListeners("line");
                lines.on("line", () => {});
                resolve(url);
            }
        });
    });
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((resolve) => {
        timer = setTimeout(() => resolve("late"), graceMs);
    });
    if ((await Promise.race([exited, late])) === "late") {
        child.kill("SIGKILL");
        await exited;
    }
    clearTimeout(timer);
}
