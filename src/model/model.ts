/**
 * The public model: load from a directory, URL or bytes; forward passes; generation of ids and of
 * streamed text; recurrent state to keep, serialize and restore.
 *
 * @module
 */

import { type ModelConfig, parseConfig } from "../config.ts";
import type { BackendName, Tensor } from "../backends/backend.ts";
import { type BackendOptions, createBackend } from "../backends/select.ts";
import { InputError, ModelLoadError } from "../errors.ts";
import { readCheckpoint } from "../io/checkpoint.ts";
import { dirSource, memorySource, type ModelSource, readRequired, urlSource } from "../io/source.ts";
import { decode, type GenerateOptions } from "../generate/generate.ts";
import { ByteTokenizer } from "../tokenizer/bytes.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { checkIds, Network, PREFILL_CHUNK } from "./network.ts";
import type { State } from "./state.ts";

/** The embedded default model: a byte-level Mamba-1 trained on Shakespeare. */
export const DEFAULT_MODEL: URL = new URL("../../models/shakespeare-bytes/", import.meta.url);

/** Where a model comes from: a directory path, a URL (file:, http:, https:), files in memory, or a source. */
export type ModelInput = string | URL | ModelSource | { files: Record<string, Uint8Array>; name?: string };

/** Options of loadModel. */
export interface LoadOptions extends BackendOptions {
  /** the tokenizer to use (default: the source's tokenizer.json when there is one, else bytes) */
  tokenizer?: Tokenizer;
}

/** Options of forward. */
export interface ForwardOptions {
  /**
   * also return the hidden states as HF transformers does: the output of each layer, then the final
   * norm_f of the last one (n_layer + 1 entries)
   */
  outputHiddenStates?: boolean;
}

/** Result of forward. */
export interface ForwardResult {
  /** (b, l, v) */
  logits: Float32Array;
  shape: [number, number, number];
  /** n_layer + 1 arrays of (b, l, d), when asked for */
  hiddenStates?: Float32Array[];
}

/** One piece of streamed text. */
export interface Piece {
  text: string;
  token: number;
}

/** Turns the accepted inputs into a source. */
export function toSource(input: ModelInput): ModelSource {
  if (typeof input === "object" && "read" in input) return input;
  if (typeof input === "object" && "files" in input) return memorySource(input.files, input.name);
  const url = input instanceof URL ? input : /^(https?|file):\/\//.test(input) ? new URL(input) : undefined;
  if (url && url.protocol !== "file:") return urlSource(url);
  return dirSource(url ?? (input as string));
}

/** Loads a model and uploads its weights to the chosen backend. */
export async function loadModel(input: ModelInput = DEFAULT_MODEL, opts: LoadOptions = {}): Promise<Model> {
  const src = toSource(input);
  const configText = new TextDecoder().decode(await readRequired(src, "config.json"));
  const config = parseConfig(configText, `${src.name}/config.json`);
  const tensors = await readCheckpoint(src);
  const tokenizer = opts.tokenizer ?? new ByteTokenizer();
  if (!opts.tokenizer && config.vocabSize < 256) {
    throw new ModelLoadError(
      `Cannot load model from ${src.name}: vocab is ${config.vocabSize}, expected at least 256 for the byte tokenizer (pass a tokenizer)`,
    );
  }
  const backend = await createBackend(opts, config);
  try {
    const network = new Network(backend, config, tensors, src.name);
    return new Model(network, tokenizer, src.name);
  } catch (e) {
    await backend.dispose();
    throw e;
  }
}

/** A loaded model on a backend. */
export class Model {
  #net: Network;
  #disposed = false;

  constructor(network: Network, readonly tokenizer: Tokenizer, readonly source: string) {
    this.#net = network;
  }

  /** The normalized config. */
  get config(): ModelConfig {
    return this.#net.config;
  }

  /** The backend actually chosen. */
  get backendName(): BackendName {
    return this.#net.backend.name;
  }

  /** The network (weights on the backend, the passes): for tools and benchmarks. */
  get network(): Network {
    this.#check();
    return this.#net;
  }

  /**
   * Full forward pass from an empty state. tokens: one id list per sequence, all of one length.
   * logits (b, l, v).
   */
  async forward(tokens: number[][], opts: ForwardOptions = {}): Promise<ForwardResult> {
    this.#check();
    const net = this.#net, be = net.backend, c = net.config;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw new InputError("Cannot run forward: no sequences, expected at least one");
    }
    const b = tokens.length, l = tokens[0]?.length ?? 0;
    tokens.forEach((t, i) => {
      if (!Array.isArray(t) || t.length !== l) {
        throw new InputError(
          `Cannot run forward: sequence ${i} has ${t?.length} tokens, expected ${l} like sequence 0`,
        );
      }
      checkIds(t, c.vocabSize, `sequence ${i}`);
    });
    const v = c.vocabSize, d = c.dModel;
    const out = new Float32Array(b * l * v);
    const hidden = opts.outputHiddenStates
      ? Array.from({ length: c.nLayer + 1 }, () => new Float32Array(b * l * d))
      : undefined;
    const state = net.newState(b);
    try {
      for (let t0 = 0; t0 < l; t0 += PREFILL_CHUNK) {
        const lc = Math.min(PREFILL_CHUNK, l - t0);
        const ids = be.zeros([b * lc], "i32");
        be.write(ids, Int32Array.from(tokens.flatMap((t) => t.slice(t0, t0 + lc))));
        const layerOut = hidden ? be.zeros([c.nLayer + 1, b * lc * d]) : undefined;
        let layer = -1; // the first call sees the embeddings, which HF does not return
        const keep = (h: Tensor) => layer++ >= 0 && be.copy(layerOut!, h, (layer - 1) * b * lc * d);
        const ws = net.run(state, ids, 0, b, lc, layerOut && keep);
        const logits = be.zeros([b * lc, v]);
        const normed = be.zeros([b * lc, d]);
        net.head(logits, normed, ws.hidden);
        if (layerOut) be.copy(layerOut, normed, c.nLayer * b * lc * d);
        const chunk = await be.read(logits); // (b, lc, v)
        for (let i = 0; i < b; i++) out.set(chunk.subarray(i * lc * v, (i + 1) * lc * v), (i * l + t0) * v);
        if (hidden && layerOut) {
          const all = await be.read(layerOut); // (n_layer + 1, b, lc, d)
          hidden.forEach((h, j) => {
            for (let i = 0; i < b; i++) {
              const from = (j * b + i) * lc * d;
              h.set(all.subarray(from, from + lc * d), (i * l + t0) * d);
            }
          });
          be.free(layerOut);
        }
        for (const t of [ids, logits, normed]) be.free(t);
      }
    } finally {
      state.dispose();
    }
    return { logits: out, shape: [b, l, v], hiddenStates: hidden };
  }

  /**
   * Continues each prompt (lengths may differ) through the recurrent path. Returns the new ids only;
   * a sequence ends at eos (included), a stop id (included) or maxNewTokens.
   */
  async generateIds(prompts: number[][], opts: GenerateOptions = {}): Promise<number[][]> {
    this.#check();
    if (!Array.isArray(prompts) || prompts.some((p) => !Array.isArray(p))) {
      throw new InputError("Cannot generate: prompts must be a list of token id lists");
    }
    const out: number[][] = prompts.map(() => []);
    for await (const chunk of decode(this.#net, prompts, opts, this.config.eosTokenId)) {
      chunk.ids.forEach((ids, i) => out[i].push(...ids));
    }
    return out;
  }

  /**
   * Text in, text out, streamed. A piece holds the text completed by one token (possibly empty while a
   * character is incomplete); text matching a stop sequence ends the stream and is not emitted.
   */
  async *generate(prompt: string, opts: GenerateOptions = {}): AsyncGenerator<Piece> {
    this.#check();
    if (typeof prompt !== "string" || prompt.length === 0) {
      throw new InputError(
        `Cannot generate: prompt is ${JSON.stringify(prompt)}, expected a non-empty string`,
      );
    }
    const stops = (opts.stop ?? []).filter((s) => s.length > 0);
    const hold = Math.max(0, ...stops.map((s) => s.length - 1)); // chars kept back until no stop can start there
    const dec = this.tokenizer.decoder();
    const ids = this.tokenizer.encode(prompt);
    const pending: Piece[] = []; // pieces whose text may still be part of a stop sequence
    let text = ""; // text of `pending`
    const gen = decode(this.#net, [ids], opts, this.config.eosTokenId);
    let result = await gen.next();
    while (!result.done) {
      for (const token of result.value.ids[0]) {
        const piece = { text: dec.push(token), token };
        pending.push(piece);
        text += piece.text;
        const cut = stops.length ? firstStop(text, stops) : -1;
        if (cut >= 0) {
          yield* trimmed(pending, cut);
          await gen.return();
          return;
        }
        while (pending.length && text.length - pending[0].text.length >= hold) {
          const p = pending.shift()!;
          text = text.slice(p.text.length);
          yield p;
        }
      }
      result = await gen.next();
    }
    const tail = dec.flush();
    if (tail) {
      pending.push({ text: tail, token: -1 });
      text += tail;
    }
    const cut = stops.length ? firstStop(text, stops) : -1;
    yield* trimmed(pending, cut >= 0 ? cut : text.length);
  }

  /** A fresh (zero) recurrent state for `batch` sequences. */
  newState(batch = 1): State {
    this.#check();
    if (!Number.isInteger(batch) || batch < 1) {
      throw new InputError(`Cannot create state: batch is ${batch}, expected an integer >= 1`);
    }
    return this.#net.newState(batch);
  }

  /** A state holding serialized bytes (from `state.serialize()`); corrupt or foreign bytes are refused. */
  restoreState(bytes: Uint8Array): State {
    this.#check();
    const batch = peekBatch(bytes);
    const state = this.#net.newState(batch);
    try {
      state.load(bytes);
    } catch (e) {
      state.dispose();
      throw e;
    }
    return state;
  }

  /** Releases the weights and the backend. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#net.dispose();
    await this.#net.backend.dispose();
  }

  #check(): void {
    if (this.#disposed) throw new InputError("Cannot use model: it was disposed");
  }
}

/** Index in `text` where the earliest stop sequence starts, or -1. */
function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** The pieces, cut to the first `chars` characters of their text. */
function* trimmed(pieces: Piece[], chars: number): Generator<Piece> {
  for (const p of pieces) {
    if (chars <= 0) return;
    const text = p.text.slice(0, chars);
    chars -= p.text.length;
    if (text || p.token >= 0) yield { text, token: p.token };
  }
}

/** The batch size a serialized state declares (checked again in full by State.load). */
function peekBatch(bytes: Uint8Array): number {
  try {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const len = view.getUint32(12, true);
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + len)));
    if (Number.isInteger(header.batch) && header.batch > 0) return header.batch;
  } catch {
    // State.load reports what is wrong.
  }
  return 1;
}
