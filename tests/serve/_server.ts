/** Helpers of the serve tests: the handler on an ephemeral loopback port, over a small fixture model. */

import { loadModel, type Model } from "../../src/model/model.ts";
import { type CompletionHandler, createHandler, type HandlerOptions } from "../../src/serve/handler.ts";
import { FIXTURES } from "../_fixtures.ts";

/** The Mamba-1 fixture (d_model 64, 2 layers, byte vocab 256): fast on the js backend. */
export const TINY = new URL("mamba-tiny/hf/", FIXTURES);

export interface TestServer extends AsyncDisposable {
  handler: CompletionHandler;
  model: Model;
  /** http://127.0.0.1:port */
  base: string;
}

/** Starts the handler on 127.0.0.1 at a free port; disposing it closes the server, handler and model. */
export async function startServer(opts: HandlerOptions = {}): Promise<TestServer> {
  const model = await loadModel(TINY, { backend: "js" });
  const handler = createHandler({ model, modelId: "mamba-tiny", ...opts });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, handler.fetch);
  return {
    handler,
    model,
    base: `http://127.0.0.1:${server.addr.port}`,
    async [Symbol.asyncDispose]() {
      await handler.close();
      await server.shutdown();
      await model.dispose();
    },
  };
}

/** The text greedy decoding gives through the Model API (the oracle for the server's output). */
export async function greedyText(model: Model, prompt: string, maxNewTokens: number): Promise<string> {
  let text = "";
  for await (const p of model.generate(prompt, { maxNewTokens, temperature: 0 })) {
    if (p.token !== model.config.eosTokenId) text += p.text;
  }
  return text;
}

/** Polls `cond` every 10 ms, at most `ms`; throws when it never holds. */
export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  for (let t = 0; t < ms; t += 10) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}
