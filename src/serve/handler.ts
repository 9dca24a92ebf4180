/**
 * An OpenAI-compatible HTTP handler for completions, built on web standards (Request, Response,
 * ReadableStream) so it mounts in `deno serve`, Deno Deploy, or any fetch-based server or framework.
 *
 * Routes: GET /health, GET /v1/models, GET /v1/models/{id}, POST /v1/completions (JSON, or server-sent
 * events with `"stream": true`). The model loads once per handler, on first use.
 *
 * @example
 * ```ts
 * import { createHandler } from "../../mod.ts";
 * export default createHandler({ backend: "auto", maxTokens: 256 }); // `deno serve` this module
 * ```
 *
 * @module
 */

import type { BackendName } from "../backends/backend.ts";
import { InputError } from "../errors.ts";
import { DEFAULT_MODEL, loadModel, type LoadOptions, Model, type ModelInput } from "../model/model.ts";
import { checkIds } from "../model/network.ts";
import { readBody } from "./body.ts";
import { errorBody, errorResponse, HttpError, json } from "./errors.ts";
import { type CompletionRequest, parseCompletionRequest, type RequestLimits } from "./request.ts";
import { type FinishReason, type Job, type JobSink, Scheduler, type SchedulerStats } from "./scheduler.ts";

/** Options of createHandler; every limit has a default. */
export interface HandlerOptions extends Partial<RequestLimits> {
  /**
   * The model: a loaded Model (the caller keeps ownership), or a directory, URL or repo id to load on
   * first use. Default: the MODEL environment variable, else the embedded default model.
   */
  model?: Model | ModelInput;
  /** the name clients use in "model" (default: the last path segment of the source) */
  modelId?: string;
  /** backend to load on (default "auto") */
  backend?: "auto" | BackendName;
  /** further options of loadModel (dtype, threads, tokenizer, log) */
  load?: Omit<LoadOptions, "backend">;
  /** largest request body, in bytes (default 1 MiB); larger bodies get 413 */
  maxBodyBytes?: number;
  /** most requests waiting for the model (default 64); past it requests get 429 */
  maxQueue?: number;
  /** most sequences decoded together (default 8) */
  maxBatch?: number;
  /** the event loop gets a turn at least this often while generating, in ms (default 10) */
  yieldEveryMs?: number;
}

/** What createHandler returns: `fetch` is all a server needs. */
export interface CompletionHandler {
  fetch(request: Request): Promise<Response>;
  /** The model, loading it if needed. */
  model(): Promise<Model>;
  /** Queue and batch counters (zeros before the model is loaded). */
  stats(): SchedulerStats;
  /** Refuses new requests, waits for running ones, and disposes the model if the handler loaded it. */
  close(): Promise<void>;
}

const DEFAULT_LIMITS: RequestLimits = {
  maxTokens: 512,
  defaultMaxTokens: 16,
  maxPromptTokens: 4096,
  maxChoices: 16,
  maxStops: 4,
  maxStopLength: 64,
};

/** Creates the handler. Nothing is loaded until the first request that needs the model. */
export function createHandler(options: HandlerOptions = {}): CompletionHandler {
  const limits: RequestLimits = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(DEFAULT_LIMITS) as (keyof RequestLimits)[]) {
    const v = options[k];
    if (v !== undefined) limits[k] = checkLimit(k, v, k === "maxChoices" ? 1 : 0);
  }
  const maxBodyBytes = checkLimit("maxBodyBytes", options.maxBodyBytes ?? 1 << 20);
  const maxQueue = checkLimit("maxQueue", options.maxQueue ?? 64);
  const maxBatch = checkLimit("maxBatch", options.maxBatch ?? 8, 1);
  const given = options.model instanceof Model ? options.model : undefined;
  const input: ModelInput = given ? given.source : (options.model as ModelInput | undefined) ?? envModel() ??
    DEFAULT_MODEL;
  const modelId = options.modelId ?? idOf(input);
  const sourceName = typeof input === "string" ? input : input instanceof URL ? input.href : modelId;

  let loading: Promise<Scheduler> | undefined;
  let scheduler: Scheduler | undefined;
  let closed = false;
  const ready = (): Promise<Scheduler> => {
    if (closed) {
      return Promise.reject(
        new HttpError(503, "Cannot load model: the server is shutting down", "server_error"),
      );
    }
    loading ??= (async () => {
      const model = given ?? await loadModel(input, { ...options.load, backend: options.backend ?? "auto" });
      scheduler = new Scheduler(model, { maxQueue, maxBatch, yieldEveryMs: options.yieldEveryMs });
      return scheduler;
    })();
    loading.catch(() => (loading = undefined)); // a failed load is tried again by the next request
    return loading;
  };

  const modelCard = () => ({ id: modelId, object: "model", created: 0, owned_by: "mamba-edge" });

  const completions = async (request: Request): Promise<Response> => {
    const body = await readBody(request, maxBodyBytes);
    const req = parseCompletionRequest(body, limits);
    if (req.model !== undefined && req.model !== modelId && req.model !== sourceName) {
      throw new HttpError(
        404,
        `Cannot complete: model "${req.model}" is unknown, expected "${modelId}"`,
        "invalid_request_error",
        "model",
        "model_not_found",
      );
    }
    let sched: Scheduler;
    try {
      sched = await ready();
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(
        503,
        `Cannot load model ${sourceName}: ${(e as Error).message}`,
        "server_error",
        null,
        "model_load_failed",
      );
    }
    const model = sched.model;
    const prompts = req.prompts.map((p, i) => {
      const ids = typeof p === "string" ? model.tokenizer.encode(p) : p;
      if (ids.length > limits.maxPromptTokens) {
        throw new HttpError(
          400,
          `Cannot complete: prompt ${i} has ${ids.length} tokens, expected at most ${limits.maxPromptTokens} (the server's cap)`,
          "invalid_request_error",
          "prompt",
          "prompt_too_long",
        );
      }
      checkIds(ids, model.config.vocabSize, `prompt ${i}`);
      return ids;
    });
    const promptTokens = prompts.reduce((s, p) => s + p.length, 0);
    return req.stream
      ? streamed(sched, req, prompts, promptTokens, modelId, request.signal)
      : await whole(sched, req, prompts, promptTokens, modelId, request.signal);
  };

  const route = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname.replace(/\/+$/, "") || "/";
    const allow = (methods: string) => {
      if (!methods.split(", ").includes(request.method)) {
        throw new HttpError(
          405,
          `Cannot ${request.method} ${path}: method is ${request.method}, expected ${methods}`,
          "invalid_request_error",
          null,
          "method_not_allowed",
          { allow: methods },
        );
      }
    };
    if (path === "/health") {
      allow("GET, HEAD");
      return json({ status: "ok", model: modelId, loaded: scheduler !== undefined, ...stats() });
    }
    if (path === "/v1/models") {
      allow("GET, HEAD");
      return json({ object: "list", data: [modelCard()] });
    }
    if (path.startsWith("/v1/models/")) {
      allow("GET, HEAD");
      const id = decodeURIComponent(path.slice("/v1/models/".length));
      if (id !== modelId) {
        throw new HttpError(
          404,
          `Cannot find model: "${id}" is unknown, expected "${modelId}"`,
          "invalid_request_error",
          "model",
          "model_not_found",
        );
      }
      return json(modelCard());
    }
    if (path === "/v1/completions") {
      allow("POST");
      return await completions(request);
    }
    throw new HttpError(
      404,
      `Cannot route ${request.method} ${path}: path is unknown, expected /health, /v1/models or /v1/completions`,
      "invalid_request_error",
      null,
      "not_found",
    );
  };

  const stats = (): SchedulerStats =>
    scheduler?.stats() ??
      { waiting: 0, running: 0, batches: 0, completed: 0, cancelled: 0, failed: 0, largestBatch: 0 };

  return {
    async fetch(request: Request): Promise<Response> {
      try {
        return await route(request);
      } catch (e) {
        return errorResponse(toHttpError(e));
      }
    },
    async model() {
      return (await ready()).model;
    },
    stats,
    async close() {
      closed = true;
      const s = await loading?.catch(() => undefined);
      await s?.close();
      if (s && !given) await s.model.dispose();
    },
  };
}

/** The error as an HTTP error: bad input is 400, anything unexpected 500. */
function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (e instanceof InputError) {
    return new HttpError(400, e.message, "invalid_request_error", null, "invalid_input");
  }
  return new HttpError(500, `Cannot complete: ${(e as Error)?.message ?? String(e)}`, "server_error");
}

/** The response to a non-streaming request, once every choice has ended. */
function whole(
  sched: Scheduler,
  req: CompletionRequest,
  prompts: number[][],
  promptTokens: number,
  modelId: string,
  signal: AbortSignal,
): Promise<Response> {
  const choices = prompts.flatMap(() =>
    Array.from({ length: req.n }, () => ({ text: "", reason: "" as FinishReason | "", tokens: 0 }))
  );
  return new Promise<Response>((settle) => {
    const resolve = (r: Response) => {
      signal.removeEventListener("abort", gone);
      settle(r);
    };
    // A client that has gone gets no answer; this one only settles the promise.
    const gone = () => resolve(new Response(null, { status: 499 }));
    signal.addEventListener("abort", gone, { once: true });
    let left = choices.length;
    const sink: JobSink = {
      text: (i, text) => (choices[i].text += text),
      finish(i, reason, tokens) {
        choices[i].reason = reason;
        choices[i].tokens = tokens;
        if (--left > 0) return;
        const completion = choices.reduce((s, c) => s + c.tokens, 0);
        resolve(json({
          id: newId(),
          object: "text_completion",
          created: Math.floor(Date.now() / 1000),
          model: modelId,
          choices: choices.map((c, index) => ({
            text: c.text,
            index,
            logprobs: null,
            finish_reason: c.reason,
          })),
          usage: {
            prompt_tokens: promptTokens,
            completion_tokens: completion,
            total_tokens: promptTokens + completion,
          },
        }));
      },
      fail: (e) => resolve(errorResponse(toHttpError(e))),
    };
    sched.submit(job(req, prompts, sink, signal));
  });
}

/** The response to a streaming request: server-sent events as OpenAI sends them, then [DONE]. */
function streamed(
  sched: Scheduler,
  req: CompletionRequest,
  prompts: number[][],
  promptTokens: number,
  modelId: string,
  signal: AbortSignal,
): Response {
  const enc = new TextEncoder();
  const id = newId(), created = Math.floor(Date.now() / 1000);
  const stop = new AbortController(); // the client went away: request aborted or stream cancelled
  let out!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (out = c),
    cancel: () => {
      open = false;
      stop.abort();
    },
  });
  const send = (data: unknown) => {
    if (open) out.enqueue(enc.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`));
  };
  const close = () => {
    if (!open) return;
    open = false;
    out.close();
  };
  const onGone = () => {
    stop.abort();
    close();
  };
  signal.addEventListener("abort", onGone, { once: true });
  const usage = req.includeUsage ? { usage: null } : {};
  const chunk = (index: number, text: string, finish: FinishReason | null) => ({
    id,
    object: "text_completion",
    created,
    model: modelId,
    choices: [{ text, index, logprobs: null, finish_reason: finish }],
    ...usage,
  });
  let left = prompts.length * req.n, completion = 0;
  const sink: JobSink = {
    text: (i, text) => send(chunk(i, text, null)),
    finish(i, reason, tokens) {
      send(chunk(i, "", reason));
      completion += tokens;
      if (--left > 0) return;
      if (req.includeUsage) {
        send({
          id,
          object: "text_completion",
          created,
          model: modelId,
          choices: [],
          usage: {
            prompt_tokens: promptTokens,
            completion_tokens: completion,
            total_tokens: promptTokens + completion,
          },
        });
      }
      send("[DONE]");
      signal.removeEventListener("abort", onGone);
      close();
    },
    fail(e) {
      send(errorBody(toHttpError(e)));
      signal.removeEventListener("abort", onGone);
      close();
    },
  };
  sched.submit(job(req, prompts, sink, stop.signal));
  return new Response(body, {
    headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
  });
}

/** The scheduler's job for a request: n sequences per prompt, choice index = prompt index x n + j. */
function job(req: CompletionRequest, prompts: number[][], sink: JobSink, signal: AbortSignal): Job {
  return {
    prompts: prompts.flatMap((p) => Array.from({ length: req.n }, () => p)),
    maxTokens: req.maxTokens,
    stop: req.stop,
    sampling: req.sampling,
    seeded: req.seeded,
    signal,
    sink,
  };
}

function newId(): string {
  return `cmpl-${crypto.randomUUID().replaceAll("-", "")}`;
}

/** The MODEL environment variable where there is one and it may be read. */
function envModel(): string | undefined {
  try {
    const g = globalThis as {
      Deno?: { env: { get(k: string): string | undefined } };
      process?: { env?: Record<string, string | undefined> };
    };
    return (g.Deno ? g.Deno.env.get("MODEL") : g.process?.env?.MODEL) || undefined;
  } catch {
    return undefined; // no permission to read the environment
  }
}

/** A model's default name: the last path segment of its source. */
function idOf(input: ModelInput): string {
  const s = typeof input === "string"
    ? input
    : input instanceof URL
    ? decodeURIComponent(input.pathname)
    : "name" in input && input.name
    ? input.name
    : "model";
  return s.replace(/\/+$/, "").split("/").pop() || "model";
}

function checkLimit(name: string, v: number, min = 0): number {
  if (!Number.isInteger(v) || v < min) {
    throw new InputError(`Cannot create handler: option "${name}" is ${v}, expected an integer >= ${min}`);
  }
  return v;
}
