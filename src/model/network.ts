/**
 * The network: embedding -> n_layer x [RMSNorm -> mixer -> +residual] -> RMSNorm -> lm_head,
 * written once against the backend ops. Prefill runs a whole prompt at once (chunked over time);
 * a step runs one token per sequence with O(1) work and memory.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import type { Backend, Tensor } from "../backends/backend.ts";
import { InputError } from "../errors.ts";
import { State } from "./state.ts";
import { WeightReader } from "./weights.ts";
import {
  loadMamba1Layer,
  mamba1Block,
  type Mamba1Scratch,
  mamba1Scratch,
  mamba1State,
  type Mamba1Weights,
} from "./mamba1.ts";
import {
  loadMamba2Layer,
  mamba2Block,
  type Mamba2Scratch,
  mamba2Scratch,
  mamba2State,
  type Mamba2Weights,
} from "./mamba2.ts";
import type { RawTensor } from "../io/safetensors.ts";

/** The longest run of tokens a prefill processes at once; longer prompts go in chunks (same result). */
export const PREFILL_CHUNK = 512;

/** Activations for one (b, l): the block's scratch plus the residual stream. */
interface Workspace {
  b: number;
  l: number;
  hidden: Tensor; // (b, l, d)
  block: Mamba1Scratch | Mamba2Scratch;
}

/** One architecture's pieces, so that the forward pass below is written once. */
interface Family<W, S> {
  load(be: Backend, w: WeightReader, c: ModelConfig, i: number): W;
  scratch(be: Backend, c: ModelConfig, b: number, l: number): S;
  state(be: Backend, c: ModelConfig, b: number): Record<string, Tensor>;
  block(be: Backend, c: ModelConfig, w: W, s: S, st: never, hidden: Tensor): void;
}

const FAMILIES = {
  mamba: {
    load: loadMamba1Layer,
    scratch: mamba1Scratch,
    state: (be, c, b) => ({ ...mamba1State(be, c, b) }),
    block: mamba1Block,
  } as Family<Mamba1Weights, Mamba1Scratch>,
  mamba2: {
    load: loadMamba2Layer,
    scratch: mamba2Scratch,
    state: (be, c, b) => ({ ...mamba2State(be, c, b) }),
    block: mamba2Block,
  } as Family<Mamba2Weights, Mamba2Scratch>,
};

/** The network on a backend: weights, workspaces, and the two passes (prefill and step). */
export class Network {
  readonly embedding: Tensor; // (v, d)
  readonly normF: Tensor; // (d)
  readonly lmHead: Tensor; // (v, d)
  readonly layers: unknown[];
  #family: Family<unknown, unknown>;
  #workspaces = new Map<string, Workspace>();

  constructor(
    readonly backend: Backend,
    readonly config: ModelConfig,
    tensors: Map<string, RawTensor>,
    origin: string,
  ) {
    const c = config;
    const w = new WeightReader(tensors, origin);
    const be = backend;
    this.#family = FAMILIES[c.arch] as Family<unknown, unknown>;
    const emb = w.get(["backbone.embeddings.weight", "backbone.embedding.weight"], [c.vocabSize, c.dModel]);
    this.embedding = be.uploadMatrix(emb, [c.vocabSize, c.dModel]);
    this.layers = Array.from({ length: c.nLayer }, (_, i) => this.#family.load(be, w, c, i));
    this.normF = be.upload(w.get(["backbone.norm_f.weight"], [c.dModel]), [c.dModel]);
    const head = w.maybe("lm_head.weight", [c.vocabSize, c.dModel]);
    this.lmHead = head && !c.tieEmbeddings ? be.uploadMatrix(head, [c.vocabSize, c.dModel]) : this.embedding;
    if (!head && !c.tieEmbeddings) w.get("lm_head.weight", [c.vocabSize, c.dModel]); // throws: missing
  }

  /** A fresh (zero) state for b sequences. */
  newState(b: number): State {
    const layers = this.layers.map(() => this.#family.state(this.backend, this.config, b));
    return new State(this.backend, this.config, b, layers);
  }

  #workspace(b: number, l: number): Workspace {
    const key = `${b}x${l}`;
    let ws = this.#workspaces.get(key);
    if (!ws) {
      if (this.#workspaces.size >= 4) this.#dropWorkspaces();
      ws = {
        b,
        l,
        hidden: this.backend.zeros([b, l, this.config.dModel]),
        block: this.#family.scratch(this.backend, this.config, b, l) as Mamba1Scratch,
      };
      this.#workspaces.set(key, ws);
    }
    return ws;
  }

  #dropWorkspaces(): void {
    for (const ws of this.#workspaces.values()) {
      this.backend.free(ws.hidden);
      for (const t of Object.values(ws.block)) this.backend.free(t);
    }
    this.#workspaces.clear();
  }

  /**
   * Runs l tokens per sequence through every layer, from `state` (updated in place).
   * ids (rows, b·l) i32, read from `idsOffset`, sequence-major. Returns the workspace, whose `hidden`
   * holds the last layer's output (b, l, d) before norm_f. `onLayer` sees the residual stream.
   */
  run(
    state: State,
    ids: Tensor,
    idsOffset: number,
    b: number,
    l: number,
    onLayer?: (h: Tensor) => void,
  ): Workspace {
    const be = this.backend;
    const ws = this.#workspace(b, l);
    be.embed(ws.hidden, this.embedding, ids, idsOffset); // (b, l, d)
    onLayer?.(ws.hidden);
    for (let i = 0; i < this.layers.length; i++) {
      this.#family.block(be, this.config, this.layers[i], ws.block, state.layers[i] as never, ws.hidden);
      onLayer?.(ws.hidden);
    }
    return ws;
  }

  /** logits (m, v) <- lm_head(norm_f(x (m, d))); `normed` (m, d) is scratch. */
  head(logits: Tensor, normed: Tensor, x: Tensor): void {
    this.backend.rmsNorm(normed, x, this.normF, this.config.normEps); // (m, d)
    this.backend.linear(logits, this.lmHead, normed); // (m, v) <- (v, d) @ (m, d)
  }

  dispose(): void {
    this.#dropWorkspaces();
  }
}

/** Checks token ids against the vocabulary; `what` names them in errors. */
export function checkIds(ids: readonly number[], vocabSize: number, what: string): void {
  if (ids.length === 0) throw new InputError(`Cannot run ${what}: it is empty, expected at least one token`);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new InputError(
        `Cannot run ${what}: token ${i} is ${id}, expected an integer id in [0, ${vocabSize})`,
      );
    }
  }
}
