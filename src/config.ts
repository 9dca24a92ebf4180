/**
 * One normalized ModelConfig from either config.json dialect: Hugging Face (`MambaConfig`,
 * `Mamba2Config`) or the original state-spaces one (`d_model`, `n_layer`, `ssm_cfg`, ...).
 *
 * Dimension glossary, used everywhere in mamba-edge (no aliases):
 *
 * b batch · l tokens in this call · d d_model · di d_inner = expand*d · n d_state · k d_conv
 * r dt_rank · h heads · p head dim · g groups · v vocab (padded) · m rows = b*l
 *
 * @module
 */

import { ConfigError } from "./errors.ts";

/** The architecture family. */
export type Arch = "mamba" | "mamba2";

/** A config, whichever dialect it was written in. Sizes use the glossary above. */
export interface ModelConfig {
  arch: Arch;
  /** d */
  dModel: number;
  nLayer: number;
  /** v: the embedding's row count, padded as the original code pads it. */
  vocabSize: number;
  /** n */
  dState: number;
  /** k */
  dConv: number;
  expand: number;
  /** di = expand * d */
  dInner: number;
  /** r (Mamba-1 only; 0 for Mamba-2) */
  dtRank: number;
  /** in_proj and out_proj carry a bias */
  bias: boolean;
  /** conv1d carries a bias */
  convBias: boolean;
  normEps: number;
  tieEmbeddings: boolean;
  /** h (Mamba-2 only; 0 for Mamba-1) */
  nHeads: number;
  /** p (Mamba-2 only; 0 for Mamba-1) */
  headDim: number;
  /** g (Mamba-2 only; 0 for Mamba-1) */
  nGroups: number;
  /** Mamba-2 prefill chunk length (0 for Mamba-1) */
  chunkSize: number;
  /** Mamba-2 clamp of dt after softplus: [min, max] */
  dtLimit: [number, number];
  /** Special ids when the config names them. */
  bosTokenId?: number;
  eosTokenId?: number;
  padTokenId?: number;
}

/**
 * Parses JSON as Python's json module writes it: bare `Infinity`, `-Infinity` and `NaN` are accepted
 * (HF writes them), and so is the `{"__float__": "Infinity"}` form.
 */
export function parseJsonLenient(text: string): unknown {
  let out = "";
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === "\\") out += text[++i] ?? "";
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') {
      inString = true;
      out += c;
      continue;
    }
    const word = /^(-?Infinity|NaN)/.exec(text.slice(i, i + 9));
    if (word) {
      out += `{"__float__":"${word[1]}"}`;
      i += word[1].length - 1;
      continue;
    }
    out += c;
  }
  return JSON.parse(out, (_key, value) => {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (keys.length === 1 && keys[0] === "__float__") return Number(value.__float__);
    }
    return value;
  });
}

type Json = Record<string, unknown>;

/** Reads config.json text (either dialect) into a ModelConfig; `file` names it in errors. */
export function parseConfig(text: string, file = "config.json"): ModelConfig {
  let raw: unknown;
  try {
    raw = parseJsonLenient(text);
  } catch (e) {
    throw new ConfigError(`Cannot parse ${file}: expected JSON, found ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(`Cannot read ${file}: expected a JSON object, found ${describe(raw)}`);
  }
  const json = raw as Json;
  return "d_model" in json ? fromOriginal(json, file) : fromHf(json, file);
}

function fromHf(json: Json, file: string): ModelConfig {
  const f = new Fields(json, file);
  const type = f.optString("model_type", "mamba");
  if (type !== "mamba" && type !== "mamba2") {
    throw new ConfigError(
      `Cannot read ${file}: field "model_type" is "${type}", expected "mamba" or "mamba2"`,
    );
  }
  const dModel = f.int("hidden_size");
  const expand = f.optNumber("expand", 2);
  const common = {
    dModel,
    nLayer: f.int("num_hidden_layers"),
    vocabSize: f.int("vocab_size"),
    dConv: f.optInt("conv_kernel", 4),
    expand,
    bias: f.optBool("use_bias", false),
    convBias: f.optBool("use_conv_bias", true),
    normEps: f.optNumber("layer_norm_epsilon", 1e-5),
    tieEmbeddings: f.optBool("tie_word_embeddings", true),
    bosTokenId: f.optId("bos_token_id"),
    eosTokenId: f.optId("eos_token_id"),
    padTokenId: f.optId("pad_token_id"),
  };
  if (type === "mamba") {
    const dInner = f.optInt("intermediate_size", Math.round(expand * dModel));
    return check({
      ...common,
      arch: "mamba",
      dState: f.optInt("state_size", 16),
      dInner,
      dtRank: f.dtRank("time_step_rank", dModel),
      nHeads: 0,
      headDim: 0,
      nGroups: 0,
      chunkSize: 0,
      dtLimit: [0, Infinity],
    }, file);
  }
  const dInner = Math.round(expand * dModel);
  const headDim = f.optInt("head_dim", 64);
  return check({
    ...common,
    arch: "mamba2",
    dState: f.optInt("state_size", 128),
    dInner,
    dtRank: 0,
    nHeads: f.optInt("num_heads", dInner / headDim),
    headDim,
    nGroups: f.optInt("n_groups", 1),
    chunkSize: f.optInt("chunk_size", 256),
    dtLimit: f.limit("time_step_limit"),
  }, file);
}

function fromOriginal(json: Json, file: string): ModelConfig {
  const f = new Fields(json, file);
  const dModel = f.int("d_model");
  const dIntermediate = json.d_intermediate ?? 0; // 0 (no MLP) is what Mamba checkpoints write
  if (dIntermediate !== 0) {
    throw new ConfigError(
      `Cannot read ${file}: field "d_intermediate" is ${
        describe(dIntermediate)
      }, expected 0 (MLP layers are not supported)`,
    );
  }
  const attn = json.attn_layer_idx;
  if (Array.isArray(attn) && attn.length > 0) {
    throw new ConfigError(
      `Cannot read ${file}: field "attn_layer_idx" lists ${attn.length} layers, expected none (hybrid attention models are not supported)`,
    );
  }
  const ssmRaw = json.ssm_cfg ?? {};
  if (typeof ssmRaw !== "object" || Array.isArray(ssmRaw) || ssmRaw === null) {
    throw new ConfigError(`Cannot read ${file}: field "ssm_cfg" is ${describe(ssmRaw)}, expected an object`);
  }
  const s = new Fields(ssmRaw as Json, `${file} (ssm_cfg)`);
  const layer = s.optString("layer", "Mamba1");
  if (layer !== "Mamba1" && layer !== "Mamba2") {
    throw new ConfigError(
      `Cannot read ${file}: field "ssm_cfg.layer" is "${layer}", expected "Mamba1" or "Mamba2"`,
    );
  }
  const pad = f.optInt("pad_vocab_size_multiple", 8);
  let vocabSize = f.int("vocab_size");
  if (pad > 1 && vocabSize % pad !== 0) vocabSize += pad - (vocabSize % pad);
  const expand = s.optNumber("expand", 2);
  const dInner = Math.round(expand * dModel);
  const common = {
    dModel,
    nLayer: f.int("n_layer"),
    vocabSize,
    dConv: s.optInt("d_conv", 4),
    expand,
    dInner,
    bias: s.optBool("bias", false),
    convBias: s.optBool("conv_bias", true),
    normEps: f.optNumber("norm_epsilon", 1e-5),
    tieEmbeddings: f.optBool("tie_embeddings", true),
  };
  if (!f.optBool("rms_norm", true)) {
    throw new ConfigError(
      `Cannot read ${file}: field "rms_norm" is false, expected true (LayerNorm is not supported)`,
    );
  }
  if (layer === "Mamba1") {
    return check({
      ...common,
      arch: "mamba",
      dState: s.optInt("d_state", 16),
      dtRank: s.dtRank("dt_rank", dModel),
      nHeads: 0,
      headDim: 0,
      nGroups: 0,
      chunkSize: 0,
      dtLimit: [0, Infinity],
    }, file);
  }
  const headDim = s.optInt("headdim", 64);
  return check({
    ...common,
    arch: "mamba2",
    dState: s.optInt("d_state", 128),
    dtRank: 0,
    nHeads: dInner / headDim,
    headDim,
    nGroups: s.optInt("ngroups", 1),
    chunkSize: s.optInt("chunk_size", 256),
    dtLimit: s.limit("dt_limit"),
  }, file);
}

function check(c: ModelConfig, file: string): ModelConfig {
  if (c.arch === "mamba2") {
    if (!Number.isInteger(c.nHeads) || c.nHeads * c.headDim !== c.dInner) {
      throw new ConfigError(
        `Cannot read ${file}: heads x head dim is ${c.nHeads} x ${c.headDim}, expected a product equal to d_inner ${c.dInner}`,
      );
    }
    if (c.nHeads % c.nGroups !== 0) {
      throw new ConfigError(
        `Cannot read ${file}: ${c.nHeads} heads, expected a multiple of ${c.nGroups} groups`,
      );
    }
  }
  if (!Number.isInteger(c.dInner) || c.dInner <= 0) {
    throw new ConfigError(`Cannot read ${file}: d_inner is ${c.dInner}, expected a positive integer`);
  }
  return c;
}

/** Typed access to config fields, with errors that name the field. */
class Fields {
  constructor(private json: Json, private file: string) {}

  private fail(key: string, expected: string): never {
    const found = key in this.json ? describe(this.json[key]) : "nothing";
    throw new ConfigError(`Cannot read ${this.file}: field "${key}" is ${found}, expected ${expected}`);
  }

  int(key: string): number {
    const v = this.json[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) this.fail(key, "a positive integer");
    return v;
  }

  optInt(key: string, fallback: number): number {
    return this.json[key] == null ? fallback : this.int(key);
  }

  optNumber(key: string, fallback: number): number {
    const v = this.json[key];
    if (v == null) return fallback;
    if (typeof v !== "number" || !(v > 0)) this.fail(key, "a positive number");
    return v;
  }

  optBool(key: string, fallback: boolean): boolean {
    const v = this.json[key];
    if (v == null) return fallback;
    if (typeof v !== "boolean") this.fail(key, "true or false");
    return v;
  }

  optString(key: string, fallback: string): string {
    const v = this.json[key];
    if (v == null) return fallback;
    if (typeof v !== "string") this.fail(key, "a string");
    return v;
  }

  optId(key: string): number | undefined {
    const v = this.json[key];
    if (v == null) return undefined;
    if (Array.isArray(v)) return typeof v[0] === "number" ? v[0] : undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) this.fail(key, "a token id");
    return v;
  }

  /** "auto" (ceil(d / 16)) or a positive integer. */
  dtRank(key: string, dModel: number): number {
    const v = this.json[key];
    if (v == null || v === "auto") return Math.ceil(dModel / 16);
    return this.int(key);
  }

  limit(key: string): [number, number] {
    const v = this.json[key];
    if (v == null) return [0, Infinity];
    if (
      !Array.isArray(v) || v.length !== 2 || typeof v[0] !== "number" || typeof v[1] !== "number" ||
      !(v[0] >= 0) || !(v[1] >= v[0])
    ) this.fail(key, "a pair [min, max] with 0 <= min <= max");
    return [v[0], v[1]];
  }
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v === null) return "null";
  if (typeof v === "object") return "an object";
  return String(v);
}
