// Writes src/generated.ts from weir's OpenAPI document: a TypeScript type
// for every schema in `components.schemas`, and `Operations`, every
// route's path parameters, query, body and answers by status. No
// generator dependency: weir's document uses a small part of OpenAPI 3.1
// ($ref, type and type lists, enum, oneOf/anyOf/allOf, properties,
// required, items, additionalProperties), and anything else is `unknown`.
//
//   npm run generate                     # from a private `weir up` (WEIR_BIN)
//   npm run generate -- --url http://127.0.0.1:8080
//   npm run generate -- --file openapi.json
//
// The tests regenerate from the running weir and fail when the committed
// file differs.

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import { packageDir, startWeir } from "./weir-up.js";

export interface Schema {
    $ref?: string;
    type?: string | string[];
    enum?: unknown[];
    const?: unknown;
    oneOf?: Schema[];
    anyOf?: Schema[];
    allOf?: Schema[];
    properties?: Record<string, Schema>;
    required?: string[];
    items?: Schema;
    additionalProperties?: boolean | Schema;
    description?: string;
    format?: string;
    [other: string]: unknown;
}

interface Parameter {
    name: string;
    in: string;
    required?: boolean;
    description?: string;
    schema?: Schema;
}

interface Content {
    [mediaType: string]: { schema?: Schema };
}

interface Operation {
    summary?: string;
    description?: string;
    parameters?: Parameter[];
    requestBody?: { required?: boolean; content?: Content };
    responses?: Record<string, { description?: string; content?: Content }>;
}

export interface OpenApi {
    openapi: string;
    paths: Record<string, Record<string, Operation>>;
    components?: { schemas?: Record<string, Schema> };
}

/** Where the generated types live. */
export const generatedPath = join(packageDir, "src", "generated.ts");

const METHODS = ["get", "put", "post", "patch", "delete"];

/** The TypeScript source for `spec`; the same document gives the same text. */
export function generate(spec: OpenApi): string {
    const out: string[] = [
        "// Generated from weir's /openapi.json by scripts/generate.ts (`npm run generate`).",
        "// Do not edit: the tests fail when this differs from what the running weir serves.",
        "",
        "/** A JSON object (`{\"type\": \"object\"}` without declared properties). */",
        "export type JsonObject = { [key: string]: unknown };",
        "",
    ];
    const schemas = spec.components?.schemas ?? {};
    for (const name of Object.keys(schemas).sort()) {
        const schema = schemas[name]!;
        out.push(...doc(schema.description, ""));
        if (isPlainObject(schema)) {
            out.push(`export interface ${name} ${objectType(schema, "")}`);
        } else {
            out.push(`export type ${name} = ${typeOf(schema, "")};`);
        }
        out.push("");
    }
    // A $ref to a schema the document does not define (weir's document
    // has named one): `unknown` under that name, so the rest still types.
    const missing = [...JSON.stringify(spec).matchAll(/"#\/components\/schemas\/([^"]+)"/g)]
        .map((m) => m[1]!)
        .filter((name) => !(name in schemas));
    for (const name of [...new Set(missing)].sort()) {
        out.push(`/** Referenced by the document, not defined in its components.schemas. */`);
        out.push(`export type ${name} = unknown;`, "");
    }
    out.push(...operations(spec), "");
    return out.join("\n");
}

/** An object schema with properties and nothing else to union or intersect. */
function isPlainObject(s: Schema): boolean {
    return s.type === "object" && s.properties !== undefined && !s.oneOf && !s.anyOf && !s.allOf
        && (s.additionalProperties === undefined || s.additionalProperties === false);
}

function doc(text: string | undefined, indent: string): string[] {
    if (!text) return [];
    const lines = text.replaceAll("*/", "*\\/").split("\n");
    if (lines.length === 1) return [`${indent}/** ${lines[0]} */`];
    return [`${indent}/**`, ...lines.map((l) => `${indent} * ${l}`.trimEnd()), `${indent} */`];
}

function refName(ref: string): string {
    const prefix = "#/components/schemas/";
    if (!ref.startsWith(prefix)) throw new Error(`unsupported $ref ${ref}`);
    return ref.slice(prefix.length);
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

function key(name: string): string {
    return IDENT.test(name) ? name : JSON.stringify(name);
}

function union(parts: string[]): string {
    const unique = [...new Set(parts)];
    if (unique.length === 0) return "never";
    if (unique.includes("unknown")) return "unknown";
    return unique.map((p) => (p.includes(" & ") ? `(${p})` : p)).join(" | ");
}

/** The TypeScript type of `s`, for text indented by `indent`. */
export function typeOf(s: Schema, indent: string): string {
    if (s.$ref) return refName(s.$ref);
    if (s.oneOf) return union(s.oneOf.map((m) => typeOf(m, indent)));
    if (s.anyOf) return union(s.anyOf.map((m) => typeOf(m, indent)));
    if (s.allOf) {
        return s.allOf.map((m) => {
            const t = typeOf(m, indent);
            return t.includes(" | ") ? `(${t})` : t;
        }).join(" & ");
    }
    if (s.enum) return union(s.enum.map((v) => JSON.stringify(v)));
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (Array.isArray(s.type)) return union(s.type.map((t) => single(t, s, indent)));
    if (typeof s.type === "string") return single(s.type, s, indent);
    return "unknown";
}

function single(type: string, s: Schema, indent: string): string {
    switch (type) {
        case "string":
            return "string";
        case "integer":
        case "number":
            return "number";
        case "boolean":
            return "boolean";
        case "null":
            return "null";
        case "array": {
            const item = s.items ? typeOf(s.items, indent) : "unknown";
            return /^[A-Za-z0-9_]+$/.test(item) ? `${item}[]` : `Array<${item}>`;
        }
        case "object": {
            const extra = s.additionalProperties;
            if (s.properties) {
                const shape = objectType(s, indent);
                if (extra && typeof extra === "object") {
                    return `${shape} & { [key: string]: ${typeOf(extra, indent)} }`;
                }
                return shape;
            }
            if (extra && typeof extra === "object") return `{ [key: string]: ${typeOf(extra, indent)} }`;
            return "JsonObject";
        }
        default:
            return "unknown";
    }
}

function objectType(s: Schema, indent: string): string {
    const inner = indent + "    ";
    const required = new Set(s.required ?? []);
    const lines = ["{"];
    for (const name of Object.keys(s.properties ?? {}).sort()) {
        const p = s.properties![name]!;
        const description = p.description ?? (p.oneOf ?? p.anyOf ?? []).find((m) => m.description)?.description;
        lines.push(...doc(description, inner));
        lines.push(`${inner}${key(name)}${required.has(name) ? "" : "?"}: ${typeOf(p, inner)};`);
    }
    lines.push(`${indent}}`);
    return lines.join("\n");
}

/** `null` is among the values `s` allows. */
function nullable(s: Schema | undefined): boolean {
    if (!s) return true;
    if (s.type === "null") return true;
    if (Array.isArray(s.type) && s.type.includes("null")) return true;
    return (s.oneOf ?? s.anyOf ?? []).some(nullable);
}

function bodySchema(content: Content | undefined): Schema | undefined {
    if (!content) return undefined;
    const json = content["application/json"];
    if (json) return json.schema ?? {};
    const first = Object.keys(content).sort()[0];
    return first === undefined ? undefined : (content[first]!.schema ?? {});
}

function operations(spec: OpenApi): string[] {
    const out = [
        "/**",
        " * Every route: `\"METHOD /path/{param}\"` → its path parameters, query,",
        " * request body and the answer's type by status.",
        " */",
        "export interface Operations {",
    ];
    const i1 = "    ", i2 = "        ", i3 = "            ";
    for (const path of Object.keys(spec.paths).sort()) {
        const item = spec.paths[path]!;
        const inPath = new Set([...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!));
        for (const method of METHODS) {
            const op = item[method];
            if (!op) continue;
            out.push(...doc(op.summary ?? op.description, i1));
            out.push(`${i1}${JSON.stringify(`${method.toUpperCase()} ${path}`)}: {`);
            const params = op.parameters ?? [];
            // Path parameters are the template's. weir's document lists some
            // query parameters as `in: path` (an IntoParams without
            // `parameter_in`); a "path" parameter the template does not name
            // is taken as the query parameter it is.
            const pathLines: string[] = [];
            for (const name of [...inPath].sort()) {
                const p = params.find((q) => q.name === name && q.in === "path");
                pathLines.push(...doc(p?.description, i3), `${i3}${key(name)}: string;`);
            }
            out.push(pathLines.length ? `${i2}path: {\n${pathLines.join("\n")}\n${i2}};` : `${i2}path: {};`);
            const query = params
                .filter((p) => p.in === "query" || (p.in === "path" && !inPath.has(p.name)))
                .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
            const queryLines: string[] = [];
            for (const p of query) {
                const optional = !p.required || nullable(p.schema);
                const schema = p.schema ?? {};
                // A query parameter is sent as text; null means "not sent".
                const t = union(typeOf(schema, i3).split(" | ").filter((x) => x !== "null"));
                queryLines.push(...doc(p.description, i3), `${i3}${key(p.name)}${optional ? "?" : ""}: ${t};`);
            }
            out.push(queryLines.length ? `${i2}query: {\n${queryLines.join("\n")}\n${i2}};` : `${i2}query: {};`);
            const body = op.requestBody ? bodySchema(op.requestBody.content) : undefined;
            if (body === undefined) {
                out.push(`${i2}body: undefined;`);
            } else {
                const t = typeOf(body, i2);
                out.push(`${i2}body: ${op.requestBody!.required ? t : union([t, "undefined"])};`);
            }
            out.push(`${i2}responses: {`);
            const responses = op.responses ?? {};
            for (const status of Object.keys(responses).sort()) {
                const r = responses[status]!;
                const schema = bodySchema(r.content);
                const statusKey = /^\d+$/.test(status) ? status : JSON.stringify(status);
                out.push(...doc(r.description, i3));
                out.push(`${i3}${statusKey}: ${schema === undefined ? "undefined" : typeOf(schema, i3)};`);
            }
            out.push(`${i2}};`, `${i1}};`);
        }
    }
    out.push("}");
    return out;
}

/** weir's document: from `url`, or from a private `weir up`. */
export async function fetchSpec(url: string): Promise<OpenApi> {
    const answer = await fetch(new URL("/openapi.json", url));
    if (!answer.ok) throw new Error(`GET ${url}/openapi.json: ${answer.status}`);
    return (await answer.json()) as OpenApi;
}

async function main(argv: string[]): Promise<void> {
    let spec: OpenApi;
    const flag = (name: string) => {
        const at = argv.indexOf(name);
        return at >= 0 ? argv[at + 1] : undefined;
    };
    const url = flag("--url");
    const file = flag("--file");
    if (file) {
        spec = JSON.parse(readFileSync(file, "utf8")) as OpenApi;
    } else if (url) {
        spec = await fetchSpec(url);
    } else {
        const weir = await startWeir();
        try {
            spec = await fetchSpec(weir.url);
        } finally {
            await weir.stop();
        }
    }
    writeFileSync(generatedPath, generate(spec));
    console.error(`generate: wrote ${generatedPath}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
    main(process.argv.slice(2)).catch((e: unknown) => {
        console.error(`generate: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
    });
}
