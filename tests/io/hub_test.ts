import assert from "node:assert/strict";
import { hubSource, parseRepoId } from "../../src/io/hub.ts";
import type { Progress } from "../../src/io/download.ts";
import { DownloadError, ModelLoadError } from "../../src/errors.ts";
import { loadModel, toSource } from "../../src/model/model.ts";
import { assertClose, expected, FIXTURES } from "../_fixtures.ts";

/**
 * A local stand-in for the Hub: GET /{owner}/{name}/resolve/{revision}/{file}.
 * - test/tiny: mamba-tiny in the original layout (config.json + pytorch_model.bin), revision main
 * - test/tiny-hf: mamba-tiny in the HF layout, at revisions main and v1
 * - test/short: its pytorch_model.bin declares more bytes than it sends, then ends the body
 * - test/broken: its pytorch_model.bin breaks off mid-file (the stream errors)
 * - test/stall: its pytorch_model.bin stops sending mid-file and keeps the connection open
 * Unknown repos answer 401 as the Hub does; unknown files 404.
 */
function serveHub() {
  const requests: string[] = [];
  const stalls: ReadableStreamDefaultController[] = [];
  const dirs: Record<string, string> = {
    "test/tiny": "mamba-tiny/original/",
    "test/tiny-hf": "mamba-tiny/hf/",
    "test/short": "mamba-tiny/original/",
    "test/broken": "mamba-tiny/original/",
    "test/stall": "mamba-tiny/original/",
  };
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const path = new URL(req.url).pathname;
    requests.push(path);
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (!m || !(m[1] in dirs)) return new Response("Repository not found", { status: 401 });
    const [, repo, rev, file] = m;
    if (rev !== "main" && !(repo === "test/tiny-hf" && rev === "v1")) {
      return new Response("Revision not found", { status: 404 });
    }
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(new URL(dirs[repo] + file, FIXTURES));
    } catch {
      return new Response("Entry not found", { status: 404 });
    }
    const half = bytes.subarray(0, bytes.length >> 1);
    const headers = { "content-length": String(bytes.length) };
    if (file === "pytorch_model.bin" && repo === "test/short") {
      return new Response(stream((c) => (c.enqueue(half), c.close())), { headers });
    }
    if (file === "pytorch_model.bin" && repo === "test/broken") {
      return new Response(
        stream((
          c,
        ) => (c.enqueue(half),
          setTimeout(() => c.error(new Error("hub_test: breaking off mid-file on purpose")), 20))
        ),
        {
          headers,
        },
      );
    }
    if (file === "pytorch_model.bin" && repo === "test/stall") {
      return new Response(stream((c) => (c.enqueue(half), stalls.push(c))), { headers });
    }
    return new Response(bytes as Uint8Array<ArrayBuffer>, { headers });
  });
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}`,
    requests,
    async close() {
      for (const c of stalls) {
        try {
          c.close();
        } catch {
          // the client already went away
        }
      }
      await server.shutdown();
    },
  };
}

function stream(start: (c: ReadableStreamDefaultController<Uint8Array>) => unknown) {
  return new ReadableStream<Uint8Array>({ start: (c) => void start(c) });
}

/** Every file under `dir`, relative to it. */
async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    else out.push(prefix + e.name);
  }
  return out.sort();
}

Deno.test("loadModel() of a repo id downloads, caches, reports progress and reloads offline", async () => {
  const hub = serveHub();
  const cacheDir = await Deno.makeTempDir();
  try {
    const e = await expected("mamba-tiny");
    const progress: Progress[] = [];
    const model = await loadModel("test/tiny", {
      endpoint: hub.endpoint,
      cacheDir,
      backend: "js",
      onProgress: (p) => progress.push(p),
    });
    assert.equal(model.source, "test/tiny");
    assertClose((await model.forward(e.inputIds)).logits, e.logits, "logits via the hub");
    await model.dispose();
    const size = (await Deno.stat(new URL("mamba-tiny/original/pytorch_model.bin", FIXTURES))).size;
    const last = progress.filter((p) => p.file === "pytorch_model.bin").at(-1);
    assert.deepEqual(last, { file: "pytorch_model.bin", done: size, total: size });
    assert.deepEqual(
      await listFiles(cacheDir),
      [
        "test/tiny/main/config.json",
        "test/tiny/main/model.safetensors.404",
        "test/tiny/main/model.safetensors.index.json.404",
        "test/tiny/main/pytorch_model.bin",
        "test/tiny/main/tokenizer.json.404",
      ].filter((f) => !f.includes("tokenizer") || progress.length < 0 || true),
    );

    const before = hub.requests.length;
    const again = await loadModel("test/tiny", {
      endpoint: hub.endpoint,
      cacheDir,
      offline: true,
      backend: "js",
    });
    assertClose((await again.forward(e.inputIds)).logits, e.logits, "logits from the cache");
    await again.dispose();
    assert.equal(hub.requests.length, before, "an offline load makes no request");
  } finally {
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadModel() offline says which file the cache lacks", async () => {
  const cacheDir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      loadModel("test/nothing", { endpoint: "http://127.0.0.1:9", cacheDir, offline: true, backend: "js" }),
      (e) => {
        assert.ok(e instanceof DownloadError);
        assert.match(
          e.message,
          /^Cannot load test\/nothing offline: config\.json is not in the cache .*test\/nothing\/main/,
        );
        return true;
      },
    );
  } finally {
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadModel() of a repo id honours @revision, the revision option and MAMBA_EDGE_ENDPOINT", async () => {
  const hub = serveHub();
  const cacheDir = await Deno.makeTempDir();
  const old = Deno.env.get("MAMBA_EDGE_ENDPOINT");
  Deno.env.set("MAMBA_EDGE_ENDPOINT", hub.endpoint);
  try {
    const e = await expected("mamba-tiny");
    for (const [id, revision] of [["test/tiny-hf@v1", undefined], ["test/tiny-hf", "v1"]] as const) {
      const model = await loadModel(id, { cacheDir, revision, backend: "js" });
      assert.equal(model.source, "test/tiny-hf@v1");
      assertClose((await model.forward(e.inputIds)).logits, e.logits, id);
      await model.dispose();
    }
    assert.ok(hub.requests.includes("/test/tiny-hf/resolve/v1/model.safetensors"));
    assert.ok(!hub.requests.some((r) => r.includes("/resolve/main/")));
  } finally {
    if (old === undefined) Deno.env.delete("MAMBA_EDGE_ENDPOINT");
    else Deno.env.set("MAMBA_EDGE_ENDPOINT", old);
    await hub.close();
    await Deno.remove(cacheDir, { recursive: true });
  }
});

Deno.test("loadModel() of a URL to a directory reads it over HTTP", async () => {
  const hub = serveHub();
  try {
    const e = await expected("mamba-tiny");
    const progress: string[] = [];
    const model = await loadModel(`${hub.endpoint}/test/tiny-hf/resolve/main`, {
      backend: "js",
      onProgress: (p) => progress.push(p.file),
    });
    assertClose((await model.forward(e.inputIds)).logits, e.logits, "logits via a URL");
    await model.dispose();
    assert.ok(progress.includes("model.safetensors"));
  } finally {
    await hub.close();
  }
});

const failures: [string, string, RegExp][] = [
  [
    "an unknown repo (HTTP 401)",
    "test/unknown",
    /config\.json: HTTP 401 \(repository not found, private or gated\), expected 200/,
  ],
  [
    "a body cut short",
    "test/short",
    /pytorch_model\.bin: (connection broke after \d+ of \d+ bytes|body is \d+ bytes, expected \d+)/,
  ],
  [
    "a server that breaks off mid-file",
    "test/broken",
    /pytorch_model\.bin: connection broke after \d+ of \d+ bytes/,
  ],
  [
    "a server that stops sending mid-file",
    "test/stall",
    /pytorch_model\.bin: no data for 300 ms after \d+ of \d+ bytes/,
  ],
];

for (const [what, id, message] of failures) {
  Deno.test(`loadModel() of a repo id fails clearly on ${what} and caches nothing corrupt`, async () => {
    const hub = serveHub();
    const cacheDir = await Deno.makeTempDir();
    try {
      await assert.rejects(
        loadModel(id, { endpoint: hub.endpoint, cacheDir, stallTimeoutMs: 300, backend: "js" }),
        (e) => {
          assert.ok(e instanceof DownloadError, String(e));
          assert.match(e.message, /^Cannot fetch http:\/\/127\.0\.0\.1:\d+\//);
          assert.match(e.message, message);
          return true;
        },
      );
      const files = await listFiles(cacheDir);
      assert.ok(!files.some((f) => f.endsWith("pytorch_model.bin") || f.includes(".partial-")), files.join());
      if (id !== "test/unknown") {
        // The cache still works: the same files from a good repo load.
        const src = hubSource(id, { endpoint: hub.endpoint, cacheDir, offline: true });
        assert.ok(await src.read("config.json"));
        await assert.rejects(src.read("pytorch_model.bin"), /pytorch_model\.bin is not in the cache/);
      }
    } finally {
      await hub.close();
      await Deno.remove(cacheDir, { recursive: true });
    }
  });
}

Deno.test("loadModel() of a repo that lacks config.json names the file", async () => {
  const hub = serveHub();
  try {
    await assert.rejects(
      loadModel("test/tiny@v2", { endpoint: hub.endpoint, cacheDir: false, backend: "js" }),
      (e) => e instanceof ModelLoadError && /test\/tiny@v2: config\.json is missing/.test(e.message),
    );
  } finally {
    await hub.close();
  }
});

Deno.test("parseRepoId() accepts owner/name[@revision] and nothing else", () => {
  assert.deepEqual(parseRepoId("state-spaces/mamba-130m"), {
    repo: "state-spaces/mamba-130m",
    revision: undefined,
  });
  assert.deepEqual(parseRepoId("state-spaces/mamba-130m-hf@refs/pr/1"), {
    repo: "state-spaces/mamba-130m-hf",
    revision: "refs/pr/1",
  });
  for (
    const s of ["mamba", "/abs/path", "./a/b", "a/b/c", "../a", "a/..", "a/b@", "a/b@../x", "https://x/y"]
  ) {
    assert.equal(parseRepoId(s), undefined, s);
  }
});

Deno.test("toSource() prefers an existing local directory over a repo id of the same form", async () => {
  const cwd = Deno.cwd();
  Deno.chdir(new URL("../../", import.meta.url)); // the repo root, where models/shakespeare-bytes is
  try {
    const src = await toSource("models/shakespeare-bytes");
    assert.equal(src.name, "models/shakespeare-bytes");
    assert.ok(await src.read("config.json"));
  } finally {
    Deno.chdir(cwd);
  }
  const hub = await toSource("state-spaces/mamba-130m", { cacheDir: false, endpoint: "http://127.0.0.1:9" });
  assert.equal(hub.name, "state-spaces/mamba-130m");
});
