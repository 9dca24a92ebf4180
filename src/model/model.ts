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
import { type HubOptions, hubSource, parseRepoId } from "../io/hub.ts";
import { decode, type GenerateOptions } from "../generate/generate.ts";
import { StopText } from "../generate/stop.ts";
import { ByteTokenizer } from "../tokenizer/bytes.ts";
import { GPT_NEOX_VOCAB, gptNeoxTokenizer, HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { checkIds, Network, PREFILL_CHUNK } from "./network.ts";
import type { State } from "./state.ts";

/** The embedded default model: a byte-level Mamba-1 trained on Shakespeare. */
export const DEFAULT_MODEL: URL = new URL("../../models/shakespeare-bytes/", import.meta.url);

/**
 * Where a model comes from: a directory path, a URL (file:, http:, https:), a repo id
 * ("state-spaces/mamba-130m", "owner/name@revision"), files in memory, or a source.
 */
export type ModelInput = string | URL | ModelSource | { files: Record<string, Uint8Array>; name?: string };

/**
 * Options of loadModel. The hub options (endpoint, revision, cacheDir, offline, onProgress, ...) apply to
 * repo ids; onProgress to URLs too.
 */
export interface LoadOptions extends BackendOptions, HubOptions {
  /**
   * the tokenizer to use (default: the source's tokenizer.json when there is one, else bytes when the
   * vocab is below GPT-NeoX's 50,277, else the bundled GPT-NeoX-20B tokenizer)
   */
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

/**
 * Turns the accepted inputs into a source. A string that is not a URL and names no existing local path
 * but looks like owner/name[@revision] is a repo id.
 */
export async function toSource(input: ModelInput, opts: LoadOptions = {}): Promise<ModelSource> {
  if (typeof input === "object" && "read" in input) return input;
  if (typeof input === "object" && "files" in input) return memorySource(input.files, input.name);
  const url = input instanceof URL ? input : /^(https?|file):\/\//.test(input) ? new URL(input) : undefined;
  if (url && url.protocol !== "file:") {
    return urlSource(url, { onProgress: opts.onProgress, stallTimeoutMs: opts.stallTimeoutMs });
  }
  if (url) return dirSource(url);
  const path = input as string;
  if (parseRepoId(path) && !(await pathExists(path))) return hubSource(path, opts);
  return dirSource(path);
}

/** Whether `path` may be a local file: false when absent or when there is no file system (a browser). */
async function pathExists(path: string): Promise<boolean> {
  let fs: typeof import("node:fs/promises");
  try {
    fs = await import("node:fs/promises");
  } catch {
    return false;
  }
  try {
    await fs.stat(path);
    return true;
  } catch (e) {
    return (e as { code?: string }).code !== "ENOENT"; // e.g. no permission: let dirSource say so
  }
}

/** Loads a model and uploads its weights to the chosen backend. */
export async function loadModel(input: ModelInput = DEFAULT_MODEL, opts: LoadOptions = {}): Promise<Model> {
  const src = await toSource(input, opts);
  const configText = new TextDecoder().decode(await readRequired(src, "config.json"));
  const config = parseConfig(configText, `${src.name}/config.json`);
  const tensors = await readCheckpoint(src);
  const tokenizer = opts.tokenizer ?? await defaultTokenizer(src, config);
  const backend = await createBackend(opts, config);
  try {
    const network = new Network(backend, config, tensors, src.name);
    return new Model(network, tokenizer, src.name);
  } catch (e) {
    await backend.dispose();
    throw e;
  }
}

/**
 * The tokenizer a model comes with: its tokenizer.json (with tokenizer_config.json when present); else
 * bytes for vocabs of 256 up to GPT-NeoX's (the byte-level models, padding included); else GPT-NeoX-20B,
 * the tokenizer of the state-spaces checkpoints, which do not ship one.
 */
export async function defaultTokenizer(src: ModelSource, config: ModelConfig): Promise<Tokenizer> {
  const json = await src.read("tokenizer.json");
  if (json) {
    const cfg = await src.read("tokenizer_config.json");
    return new HfTokenizer(json, cfg ?? {}, `${src.name}/tokenizer.json`);
  }
  if (config.vocabSize >= GPT_NEOX_VOCAB) return await gptNeoxTokenizer();
  if (config.vocabSize >= 256) return new ByteTokenizer();
  throw new ModelLoadError(
    `Cannot load model from ${src.name}: vocab is ${config.vocabSize} and there is no tokenizer.json, expected at least 256 for the byte tokenizer (pass a tokenizer)`,
  );
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
   * Text in, text out, streamed. A piece holds the text released by one token: empty while a character
   * is incomplete or while the text could still be the start of a stop sequence. A stop sequence ends
   * the stream and is not emitted. A last piece with token -1 carries text held back at the end.
   */
  async *generate(prompt: string, opts: GenerateOptions = {}): AsyncGenerator<Piece> {
    this.#check();
    if (typeof prompt !== "string" || prompt.length === 0) {
      throw new InputError(
        `Cannot generate: prompt is ${JSON.stringify(prompt)}, expected a non-empty string`,
      );
    }
    const stops = new StopText(opts.stop ?? []);
    const dec = this.tokenizer.decoder();
    const gen = decode(this.#net, [this.tokenizer.encode(prompt)], opts, this.config.eosTokenId);
    for await (const chunk of gen) {
      for (const token of chunk.ids[0]) {
        const { text, stopped } = stops.push(dec.push(token));
        if (stopped) {
          if (text) yield { text, token };
          await gen.return();
          return;
        }
        yield { text, token };
      }
    }
    const { text } = stops.push(dec.flush());
    const tail = text + stops.end();
    if (tail) yield { text: tail, token: -1 };
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
