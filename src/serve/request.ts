/**
 * Parsing and checking a POST /v1/completions body (OpenAI's format) into a completion request. Caps
 * come from the handler's limits; each refusal names the field (`param`) and the cap.
 *
 * @module
 */

import type { SamplingParams } from "../backends/backend.ts";
import { HttpError } from "./errors.ts";

/** The caps a request is checked against. */
export interface RequestLimits {
  /** largest max_tokens accepted */
  maxTokens: number;
  /** max_tokens when the request gives none (OpenAI's default is 16) */
  defaultMaxTokens: number;
  /** longest prompt accepted, in tokens */
  maxPromptTokens: number;
  /** most sequences in one request: prompts x n */
  maxChoices: number;
  /** most stop sequences, and the longest one in characters */
  maxStops: number;
  maxStopLength: number;
}

/** A checked completion request; prompts are not yet tokenized. */
export interface CompletionRequest {
  model?: string;
  /** a text or token ids, per prompt */
  prompts: (string | number[])[];
  maxTokens: number;
  n: number;
  stream: boolean;
  includeUsage: boolean;
  stop: string[];
  sampling: SamplingParams;
  /** whether the request chose its seed (then its draws must not depend on other requests) */
  seeded: boolean;
}

const bad = (param: string, message: string) =>
  new HttpError(400, `Cannot complete: ${message}`, "invalid_request_error", param, "invalid_value");

const show = (v: unknown) => {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

/** Parses and checks a body; throws HttpError 400 naming the field at fault. */
export function parseCompletionRequest(bytes: Uint8Array, limits: RequestLimits): CompletionRequest {
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new HttpError(
      400,
      `Cannot parse request: body is not valid JSON (${(e as Error).message}), expected a JSON object`,
      "invalid_request_error",
      null,
      "invalid_json",
    );
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new HttpError(
      400,
      `Cannot parse request: body is ${show(body)}, expected a JSON object`,
      "invalid_request_error",
      null,
      "invalid_json",
    );
  }
  const b = body as Record<string, unknown>;
  const has = (k: string) => b[k] !== undefined && b[k] !== null;

  const num = (k: string, dflt: number, ok: (x: number) => boolean, expected: string): number => {
    if (!has(k)) return dflt;
    const x = b[k];
    if (typeof x !== "number" || !ok(x)) throw bad(k, `"${k}" is ${show(x)}, expected ${expected}`);
    return x;
  };
  const int = (k: string, dflt: number, lo: number, hi: number, note = "") =>
    num(k, dflt, (x) => Number.isInteger(x) && x >= lo && x <= hi, `an integer in [${lo}, ${hi}]${note}`);
  const bool = (obj: Record<string, unknown>, k: string, param = k): boolean => {
    const x = obj[k];
    if (x === undefined || x === null) return false;
    if (typeof x !== "boolean") throw bad(param, `"${param}" is ${show(x)}, expected true or false`);
    return x;
  };

  if (has("model") && typeof b.model !== "string") {
    throw bad("model", `"model" is ${show(b.model)}, expected a string`);
  }

  // prompt: a string, a list of strings, a list of token ids, or a list of token id lists.
  const p = b.prompt;
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.every((t) => typeof t === "number");
  let prompts: (string | number[])[];
  if (typeof p === "string") prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "string")) prompts = p as string[];
  else if (Array.isArray(p) && p.length > 0 && isIds(p)) prompts = [p];
  else if (Array.isArray(p) && p.length > 0 && p.every(isIds)) prompts = p as number[][];
  else {
    throw bad(
      "prompt",
      `"prompt" is ${
        show(p)
      }, expected a string, a non-empty list of strings, token ids, or lists of token ids`,
    );
  }

  const maxTokens = int("max_tokens", limits.defaultMaxTokens, 0, limits.maxTokens, " (the server's cap)");
  const n = int("n", 1, 1, limits.maxChoices);
  if (prompts.length * n > limits.maxChoices) {
    throw bad(
      "n",
      `prompts x n is ${prompts.length} x ${n}, expected at most ${limits.maxChoices} sequences (the server's cap)`,
    );
  }
  const temperature = num("temperature", 1, (x) => x >= 0 && x <= 2, "a number in [0, 2]");
  const topP = num("top_p", 1, (x) => x > 0 && x <= 1, "a number in (0, 1]");
  const topK = Math.max(0, int("top_k", 0, -1, 1 << 30)); // 0 and -1 mean no top-k
  const minP = num("min_p", 0, (x) => x >= 0 && x < 1, "a number in [0, 1)");
  const repetitionPenalty = num(
    "repetition_penalty",
    1,
    (x) => x > 0 && Number.isFinite(x),
    "a number > 0",
  );
  const seeded = has("seed");
  const seed = seeded ? int("seed", 0, 0, 0xffffffff) : crypto.getRandomValues(new Uint32Array(1))[0];

  let stop: string[] = [];
  if (has("stop")) {
    const s = b.stop;
    if (typeof s === "string") stop = [s];
    else if (Array.isArray(s) && s.every((x) => typeof x === "string")) stop = s as string[];
    else throw bad("stop", `"stop" is ${show(s)}, expected a string or a list of strings`);
    if (stop.length > limits.maxStops) {
      throw bad("stop", `"stop" has ${stop.length} sequences, expected at most ${limits.maxStops}`);
    }
    const long = stop.find((x) => x.length > limits.maxStopLength);
    if (long !== undefined) {
      throw bad(
        "stop",
        `a stop sequence has ${long.length} characters, expected at most ${limits.maxStopLength}`,
      );
    }
  }

  const stream = bool(b, "stream");
  let includeUsage = false;
  if (has("stream_options")) {
    const so = b.stream_options;
    if (typeof so !== "object" || Array.isArray(so)) {
      throw bad("stream_options", `"stream_options" is ${show(so)}, expected an object`);
    }
    includeUsage = bool(so as Record<string, unknown>, "include_usage", "stream_options.include_usage");
  }

  // What this server does not do is refused rather than ignored.
  for (const [k, neutral] of [["presence_penalty", 0], ["frequency_penalty", 0], ["best_of", 1]] as const) {
    if (has(k) && b[k] !== neutral) {
      throw bad(k, `"${k}" is ${show(b[k])}, expected ${neutral} (not supported)`);
    }
  }
  if (has("logprobs") && b.logprobs !== 0) {
    throw bad("logprobs", `"logprobs" is ${show(b.logprobs)}, expected null (not supported)`);
  }
  if (has("echo") && b.echo !== false) {
    throw bad("echo", `"echo" is ${show(b.echo)}, expected false (not supported)`);
  }
  if (has("suffix")) throw bad("suffix", `"suffix" is ${show(b.suffix)}, expected null (not supported)`);
  if (has("logit_bias") && Object.keys(b.logit_bias as object).length > 0) {
    throw bad("logit_bias", `"logit_bias" is ${show(b.logit_bias)}, expected {} (not supported)`);
  }

  return {
    model: has("model") ? (b.model as string) : undefined,
    prompts,
    maxTokens,
    n,
    stream,
    includeUsage,
    stop,
    sampling: { temperature, topK, topP, minP, repetitionPenalty, seed },
    seeded,
  };
}
