import assert from "node:assert/strict";
import { download, type Progress } from "../../src/io/download.ts";
import { DownloadError } from "../../src/errors.ts";

Deno.test("download() reads a body without Content-Length and reports its size at the end", async () => {
  const parts = [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5])];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    if (new URL(req.url).pathname === "/teapot") return new Response("no", { status: 418 });
    return new Response(
      new ReadableStream({
        start(c) {
          for (const p of parts) c.enqueue(p);
          c.close();
        },
      }),
    );
  });
  try {
    const base = `http://127.0.0.1:${server.addr.port}`;
    const progress: Progress[] = [];
    const bytes = await download(new URL(`${base}/f`), "f", { onProgress: (p) => progress.push(p) });
    assert.deepEqual(bytes, new Uint8Array([1, 2, 3, 4, 5]));
    assert.deepEqual(progress.at(-1), { file: "f", done: 5, total: 5 });
    await assert.rejects(download(new URL(`${base}/teapot`), "teapot"), (e) => {
      assert.ok(e instanceof DownloadError);
      assert.equal(e.message, `Cannot fetch ${base}/teapot: HTTP 418, expected 200`);
      return true;
    });
  } finally {
    await server.shutdown();
  }
});
