// The client's types are generated from weir's /openapi.json: this fails
// when the committed src/generated.ts is not what the running weir's
// document generates (then `npm run generate`, and let tsc show what the
// client must change).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { fetchSpec, generate, generatedPath } from "../scripts/generate.js";
import type { Weir } from "../scripts/weir-up.js";
import { up } from "./support.js";

let weir: Weir;

before(async () => {
    weir = await up();
});

after(async () => {
    await weir?.stop();
});

test("src/generated.ts is what weir's /openapi.json generates", async () => {
    const spec = await fetchSpec(weir.url);
    const fresh = generate(spec);
    const committed = readFileSync(generatedPath, "utf8");
    if (fresh !== committed) {
        const a = committed.split("\n");
        const b = fresh.split("\n");
        let line = 0;
        while (line < a.length && a[line] === b[line]) line++;
        assert.fail(
            `src/generated.ts differs from what ${weir.url}/openapi.json generates, from line ${line + 1}:\n` +
            `  committed: ${a[line] ?? "(end)"}\n  generated: ${b[line] ?? "(end)"}\n` +
            "run `npm run generate` (WEIR_BIN=… for another weir) and fix what tsc then finds",
        );
    }
});

test("every component schema has a type, and every route an Operations entry", async () => {
    const spec = await fetchSpec(weir.url);
    const committed = readFileSync(generatedPath, "utf8");
    for (const name of Object.keys(spec.components?.schemas ?? {})) {
        assert.match(committed, new RegExp(`^export (interface|type) ${name}\\b`, "m"), `schema ${name}`);
    }
    for (const [path, item] of Object.entries(spec.paths)) {
        for (const method of Object.keys(item)) {
            assert.ok(committed.includes(JSON.stringify(`${method.toUpperCase()} ${path}`)), `${method} ${path}`);
        }
    }
});
