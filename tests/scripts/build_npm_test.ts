/**
 * The npm build, end to end: build, `npm pack`, install the tarball into a fresh project, run
 * examples/node.mjs there under Node on the fixture models and the embedded default (greedy ids equal to
 * HF's and to Deno's through mod.ts), and type-check a consumer with the package's declarations.
 * Needs node and npm on PATH; npm installs only the local tarball (no dependencies, no network).
 */

import assert from "node:assert/strict";
import ts from "typescript";
import { fileURLToPath } from "node:url";
import { buildNpm, rewriteSource, scanModule } from "../../scripts/build_npm.ts";
import { loadModel } from "../../mod.ts";
import { CASES, expected, FIXTURES, hfNewIds } from "../_fixtures.ts";

const ROOT = new URL("../../", import.meta.url);

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** A child that hangs (a worker pool kept alive, say) fails the test instead of stalling it. */
const CHILD_TIMEOUT_MS = 120_000;

async function run(cmd: string, args: string[], cwd: string): Promise<Ran> {
  const signal = AbortSignal.timeout(CHILD_TIMEOUT_MS);
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped", signal }).output();
  if (signal.aborted) {
    throw new Error(`${cmd} ${args.join(" ")} ran past ${CHILD_TIMEOUT_MS} ms and was killed`);
  }
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function runOk(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

Deno.test("rewriteSource() maps npm: specifiers to bare ones and records their ranges", () => {
  const deps = new Map<string, string>();
  const src = [
    `import { Tokenizer } from "npm:@huggingface/tokenizers@^0.1.0";`,
    `export { x } from 'npm:some-pkg@1.2.3/sub/path.js';`,
    `const lazy = () => import("npm:other");`,
    `// import { no } from "npm:in-a-comment@9";`,
    `const s = "npm:just-a-string@1";`,
  ].join("\n");
  const out = rewriteSource(src, "/p/mod.ts", deps);
  assert.equal(
    out,
    [
      `import { Tokenizer } from "@huggingface/tokenizers";`,
      `export { x } from 'some-pkg/sub/path.js';`,
      `const lazy = () => import("other");`,
      `// import { no } from "npm:in-a-comment@9";`,
      `const s = "npm:just-a-string@1";`,
    ].join("\n"),
  );
  assert.deepEqual(
    Object.fromEntries(deps),
    { "@huggingface/tokenizers": "^0.1.0", "some-pkg": "1.2.3", "other": "*" },
  );
  assert.throws(
    () => rewriteSource(`import "npm:some-pkg@2.0.0";`, "/p/b.ts", deps),
    /imports npm:some-pkg@2\.0\.0, expected the range used elsewhere \(1\.2\.3\)/,
  );
});

Deno.test("rewriteSource() points import.meta.url references to .ts modules at .js", () => {
  const src = [
    `const w = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });`,
    `const dir = new URL("../../models/shakespeare-bytes/", import.meta.url);`,
    `const r = import.meta.resolve("./_kernels.mts");`,
    `const other = new URL("./x.ts", "https://example.com/");`,
  ].join("\n");
  assert.deepEqual(scanModule(src, "/p/a.ts").urlRefs.map((r) => r.text), [
    "./worker.ts",
    "../../models/shakespeare-bytes/",
    "./_kernels.mts",
  ]);
  assert.equal(
    rewriteSource(src, "/p/a.ts", new Map()),
    [
      `const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });`,
      `const dir = new URL("../../models/shakespeare-bytes/", import.meta.url);`,
      `const r = import.meta.resolve("./_kernels.mjs");`,
      `const other = new URL("./x.ts", "https://example.com/");`,
    ].join("\n"),
  );
});

Deno.test("scanModule() reports imports and import.meta.url references whose target is computed", () => {
  const src = [
    `const a = await import("./a.ts");`,
    `const b = await import(name);`,
    `const c = new URL(\`./\${kernel}.wasm\`, import.meta.url);`,
    `const d = new URL(\`./fixed.wasm\`, import.meta.url);`,
    `const e = import.meta.resolve(path);`,
    `const f = new URL(name, base);`,
  ].join("\n");
  const scan = scanModule(src, "/p/a.ts");
  assert.deepEqual(scan.computed, [2, 3, 5]);
  assert.deepEqual(scan.specifiers.map((s) => s.text), ["./a.ts"]);
  assert.deepEqual(scan.urlRefs.map((s) => s.text), ["./fixed.wasm"]);
});

Deno.test("buildNpm() follows workers, dynamic imports, JSON modules and assets, and the result runs under Node", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "build_npm_graph_" });
  try {
    const files: Record<string, string> = {
      "deno.json": `{ "version": "1.2.3", "imports": { "pad": "npm:left-pad@^1.3.0", "#h/": "./src/" } }`,
      "mod.ts": `
import data from "./src/data.json" with { type: "json" };
export { data };
export const TABLE: URL = new URL("./assets/table/", import.meta.url);
export async function readTable(): Promise<string> {
  const fs = await import("node:fs/promises");
  return await fs.readFile(new URL("x.txt", TABLE), "utf8");
}
export async function inWorker(n: number): Promise<number> {
  const { Worker } = await import("node:worker_threads");
  const w = new Worker(new URL("./src/worker.ts", import.meta.url));
  try {
    return await new Promise((ok, fail) => {
      w.once("message", (v: number) => ok(v));
      w.once("error", (e: unknown) => fail(e));
      w.postMessage(n);
    });
  } finally {
    await w.terminate();
  }
}
export async function triple(n: number): Promise<number> {
  return (await import("./src/helper.ts")).triple(n);
}
export async function unused(): Promise<unknown> {
  return [await import("npm:left-pad@^1.3.0"), await import("pad")];
}
export { triple as tripleNow } from "#h/helper.ts";
`,
      "src/worker.ts": `
import { parentPort } from "node:worker_threads";
import { triple } from "./helper.ts";
parentPort.on("message", (n: number) => parentPort.postMessage(triple(n)));
`,
      "src/helper.ts": `export function triple(n: number): number {\n  return 3 * n;\n}\n`,
      "src/data.json": `{ "answer": 42 }`,
      "assets/table/x.txt": "a table",
      "src/not_reached.ts": `export const x: number = "not a number";`,
    };
    const proj = `${tmp}/proj`;
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(`${proj}/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
      await Deno.writeTextFile(`${proj}/${name}`, text);
    }
    const out = `${tmp}/out`;
    const res = await buildNpm({ root: proj, outDir: out, log: () => {} });
    assert.deepEqual(res.modules, ["mod.ts", "src/data.json", "src/helper.ts", "src/worker.ts"]);
    assert.deepEqual(res.assets, ["assets/table"]);
    assert.equal(res.packageJson.version, "1.2.3");
    assert.deepEqual(res.packageJson.dependencies, { "left-pad": "^1.3.0" });
    assert.deepEqual(res.packageJson.files, ["assets", "mod.d.ts", "mod.js", "src"]);
    const modJs = await Deno.readTextFile(`${out}/mod.js`);
    assert.match(modJs, /new URL\("\.\/src\/worker\.js", import\.meta\.url\)/);
    assert.match(modJs, /import\("left-pad"\), await import\("left-pad"\)/);
    assert.match(modJs, /from "\.\/src\/helper\.js"/);
    assert.equal(res.packageJson.engines.node, ">=20.10");
    const script = `import * as m from ${JSON.stringify(`${out}/mod.js`)};
console.log(JSON.stringify([m.data, await m.readTable(), await m.inWorker(5), await m.triple(7)]));`;
    await Deno.writeTextFile(`${tmp}/run.mjs`, script);
    const got = await runOk("node", ["run.mjs"], tmp);
    assert.deepEqual(JSON.parse(got), [{ answer: 42 }, "a table", 15, 21]);

    // A type error in the reached graph stops the build.
    await Deno.writeTextFile(
      `${proj}/src/helper.ts`,
      `export function triple(n: number): string {\n  return 3 * n;\n}\n`,
    );
    await assert.rejects(buildNpm({ root: proj, outDir: out, log: () => {} }), /helper\.ts.*TS2322/s);
    // So does a Deno-only API (the library keeps to web-standard APIs) ...
    await Deno.writeTextFile(
      `${proj}/src/helper.ts`,
      `export const triple = (n: number): number => Deno.pid * n;\n`,
    );
    await assert.rejects(
      buildNpm({ root: proj, outDir: out, log: () => {} }),
      /helper\.ts.*Cannot find name 'Deno'/s,
    );
    // ... and a reference the build cannot follow.
    await Deno.writeTextFile(`${proj}/src/helper.ts`, `export const triple = (n: string) => import(n);\n`);
    await assert.rejects(
      buildNpm({ root: proj, outDir: out, log: () => {} }),
      /src\/helper\.ts line 1 imports or refers to a computed path, expected a string literal/,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** Backends a Node process may have: webgpu is left out (Node has no navigator.gpu). */
const NODE_BACKENDS = ["js", "wasm"] as const;

/** HF's greedy continuation of "ROMEO:\n" with the embedded model (training.json, produced by PyTorch). */
async function shakespeareReference(): Promise<{ prompt: string; continuation: string }> {
  const t = JSON.parse(await Deno.readTextFile(new URL("models/shakespeare-bytes/training.json", ROOT)));
  const prompt: string = t.greedy_prompt;
  assert.ok(t.greedy_300_hf.startsWith(prompt));
  return { prompt, continuation: t.greedy_300_hf.slice(prompt.length) };
}

Deno.test("npm package installs, runs examples/node.mjs under Node like Deno and HF, and type-checks", async (t) => {
  const nodeVersion = (await runOk("node", ["--version"], ".")).trim();
  assert.ok(Number(/^v(\d+)/.exec(nodeVersion)?.[1]) >= 20, `node is ${nodeVersion}, expected >= 20`);
  const tmp = await Deno.makeTempDir({ prefix: "build_npm_" });
  try {
    const out = `${tmp}/npm`;
    const app = `${tmp}/app`;
    let tarball = "";

    await t.step("build and pack", async () => {
      const res = await buildNpm({ outDir: out, log: () => {} });
      for (const [pkg, range] of Object.entries(res.packageJson.dependencies)) {
        assert.notEqual(range, "*", `dependency ${pkg} has no version`);
      }
      assert.ok(res.assets.includes("models/shakespeare-bytes"), `assets: ${res.assets}`);
      const packed = JSON.parse(await runOk("npm", ["pack", "--json", "--pack-destination", tmp], out));
      tarball = `${tmp}/${packed[0].filename}`;
      const paths: string[] = packed[0].files.map((f: { path: string }) => f.path);
      for (const must of ["package.json", "README.md", "LICENSE", "mod.js", "mod.d.ts"]) {
        assert.ok(paths.includes(must), `${must} is not in the tarball`);
      }
      assert.ok(paths.includes("models/shakespeare-bytes/model.safetensors"));
      const sources = paths.filter((p) => /\.ts$/.test(p) && !p.endsWith(".d.ts"));
      assert.deepEqual(sources, [], "TypeScript sources in the tarball");
      assert.deepEqual(paths.filter((p) => /^(tests|scripts|examples|bench)\//.test(p)), []);
    });

    await t.step("install the tarball into a fresh project", async () => {
      await Deno.mkdir(app);
      await Deno.writeTextFile(
        `${app}/package.json`,
        JSON.stringify({ name: "consumer", private: true, type: "module" }),
      );
      await runOk("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", tarball], app);
      await Deno.copyFile(new URL("examples/node.mjs", ROOT), `${app}/node.mjs`);
    });

    /** Runs the example in the consumer project; undefined when the backend is not in this build. */
    const example = async (backend: string, args: string[]) => {
      const r = await run("node", ["node.mjs", ...args, "--backend", backend, "--json"], app);
      if (r.code !== 0 && r.stderr.includes(`"${backend}" is unknown`)) return undefined;
      if (r.code !== 0) throw new Error(`node node.mjs ${args.join(" ")} exited ${r.code}\n${r.stderr}`);
      const lines = r.stdout.trim().split("\n");
      return JSON.parse(lines[lines.length - 1]) as { backend: string; ids: number[][]; text?: string };
    };

    for (const backend of NODE_BACKENDS) {
      await t.step(`${backend}: fixtures and the embedded model under Node, as in Deno and HF`, async () => {
        for (const name of CASES) {
          const dir = new URL(`${name}/hf/`, FIXTURES);
          const e = await expected(name);
          const prompts = e.inputIds.map((row) => row.join(",")).join(";");
          const got = await example(backend, [
            fileURLToPath(dir),
            "--ids",
            prompts,
            "--tokens",
            `${e.newTokens}`,
          ]);
          if (!got) {
            console.log(`  ${backend}: not in this build; skipped`);
            return;
          }
          const deno = await loadModel(dir, { backend });
          const denoIds = await deno.generateIds(e.inputIds, { maxNewTokens: e.newTokens, temperature: 0 });
          const eos = deno.config.eosTokenId;
          await deno.dispose();
          assert.equal(got.backend, backend);
          assert.deepEqual(got.ids, hfNewIds(e, eos), `${name} on ${backend}: Node vs HF`);
          assert.deepEqual(got.ids, denoIds, `${name} on ${backend}: Node vs Deno`);
        }
        const ref = await shakespeareReference();
        const n = new TextEncoder().encode(ref.continuation).length;
        const got = await example(backend, ["--prompt", ref.prompt, "--tokens", String(n)]);
        assert.ok(got);
        const deno = await loadModel(undefined, { backend });
        const [denoIds] = await deno.generateIds([[...new TextEncoder().encode(ref.prompt)]], {
          maxNewTokens: n,
          temperature: 0,
        });
        await deno.dispose();
        assert.equal(got.text, ref.continuation, `shakespeare-bytes on ${backend}: Node vs HF`);
        assert.deepEqual(got.ids, [denoIds], `shakespeare-bytes on ${backend}: Node vs Deno`);
      });
    }

    await t.step("auto: the embedded model under Node", async () => {
      const ref = await shakespeareReference();
      const n = new TextEncoder().encode(ref.continuation).length;
      const got = await example("auto", ["--prompt", ref.prompt, "--tokens", String(n)]);
      assert.ok(got);
      assert.ok((NODE_BACKENDS as readonly string[]).includes(got.backend), `auto chose ${got.backend}`);
      assert.equal(got.text, ref.continuation, `shakespeare-bytes on auto (${got.backend}): Node vs HF`);
    });

    await t.step("createHandler() answers a completion under Node", async () => {
      const ref = await shakespeareReference();
      await Deno.writeTextFile(
        `${app}/serve.mjs`,
        `import { createHandler } from "mamba-edge";
const handler = createHandler({ backend: "js" });
const res = await handler.fetch(new Request("http://localhost/v1/completions", {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ prompt: process.argv[2], max_tokens: Number(process.argv[3]), temperature: 0 }),
}));
console.log(JSON.stringify({ status: res.status, body: await res.json() }));
await handler.close();
`,
      );
      const n = new TextEncoder().encode(ref.continuation).length;
      const got = JSON.parse(await runOk("node", ["serve.mjs", ref.prompt, String(n)], app));
      assert.equal(got.status, 200, JSON.stringify(got.body));
      assert.equal(got.body.choices[0].text, ref.continuation);
    });

    await t.step("a TypeScript consumer type-checks (node16 and bundler resolution)", async () => {
      await Deno.writeTextFile(
        `${app}/consumer.ts`,
        `import { BackendError, type CompletionHandler, createHandler, DEFAULT_MODEL, type GenerateOptions, loadModel,
  type Model, type ModelConfig, type Piece } from "mamba-edge";

const model: Model = await loadModel(DEFAULT_MODEL, { backend: "js", log: (m: string) => console.error(m) });
const opts: GenerateOptions = { maxNewTokens: 8, temperature: 0.8, topP: 0.95, seed: 1 };
const ids: number[][] = await model.generateIds([[82, 79]], opts);
const config: ModelConfig = model.config;
const { logits, shape }: { logits: Float32Array; shape: [number, number, number] } = await model.forward([[1, 2]]);
for await (const piece of model.generate("ROMEO:\\n", opts)) {
  const p: Piece = piece;
  console.log(p.text, ids, config.arch, logits.length, shape);
}
console.log(new BackendError("x") instanceof Error, model.backendName === "wasm");
// @ts-expect-error a string is not a list of id lists
await model.generateIds("ROMEO", opts);
// @ts-expect-error there is no such backend
await loadModel(undefined, { backend: "cuda" });
await model.dispose();
const handler: CompletionHandler = createHandler({ model: "models/shakespeare-bytes", maxBatch: 4 });
const res: Response = await handler.fetch(new Request("http://localhost/v1/models"));
console.log(res.status);
await handler.close();
`,
      );
      for (const resolution of ["node16", "bundler"]) {
        const { options, errors } = ts.convertCompilerOptionsFromJson({
          target: "es2022",
          module: resolution === "node16" ? "node16" : "es2022",
          moduleResolution: resolution,
          lib: ["es2022", "dom"],
          types: [],
          strict: true,
          noEmit: true,
          skipLibCheck: false, // the package's declarations are checked; TypeScript's own libs are not
          skipDefaultLibCheck: true,
        }, app);
        assert.deepEqual(errors, []);
        const program = ts.createProgram([`${app}/consumer.ts`], options);
        const diags = ts.getPreEmitDiagnostics(program);
        const text = ts.formatDiagnostics(diags, {
          getCanonicalFileName: (f) => f,
          getCurrentDirectory: () => app,
          getNewLine: () => "\n",
        });
        assert.equal(diags.length, 0, `tsc (${resolution}):\n${text}`);
        const declared = program.getSourceFiles().map((sf) => sf.fileName).filter((f) =>
          f.includes("node_modules/mamba-edge/")
        );
        assert.ok(
          declared.some((f) => f.endsWith("mamba-edge/mod.d.ts")),
          `${resolution}: mod.d.ts not used`,
        );
      }
    });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
