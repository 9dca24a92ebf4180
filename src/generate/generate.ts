/**
 * The decode loop: prefill the prompts, then one recurrent step per new token. Sampling is a backend op
 * and sampled ids stay on the backend (they feed the next step's embedding there); the loop reads ids
 * back every `backend.stepsPerRead` steps, which is every step on js and wasm and several on webgpu,
 * where the steps of the next cycles are issued before the earlier reads resolve (pipelined).
 *
 * @module
 */

import type { Backend, SamplingParams, Tensor } from "../backends/backend.ts";
import { InputError } from "../errors.ts";
import { checkIds, type Network, PREFILL_CHUNK } from "../model/network.ts";
import type { State } from "../model/state.ts";

/** Options of generateIds and generate. */
export interface GenerateOptions extends Partial<SamplingParams> {
  /** new tokens per sequence, at most (default 64) */
  maxNewTokens?: number;
  /** ids that end a sequence (included in its output), besides eos */
  stopIds?: number[];
  /** text that ends the generation (generate only; not included in the output) */
  stop?: string[];
  /** keep going past the model's eos token (default false) */
  ignoreEos?: boolean;
  /** aborts generation; the call rejects with the signal's reason */
  signal?: AbortSignal;
  /**
   * Continue from this state (updated in place) instead of an empty one. Afterwards it has read the
   * prompt and every generated token but the last, so feeding that last token continues the text.
   */
  state?: State;
}

/** New ids since the previous chunk, per sequence, and which sequences are done. */
export interface DecodeChunk {
  ids: number[][];
  done: boolean[];
}

/** Sampling parameters from options, checked. */
export function samplingParams(o: GenerateOptions): SamplingParams {
  const p: SamplingParams = {
    temperature: o.temperature ?? 0,
    topK: o.topK ?? 0,
    topP: o.topP ?? 1,
    minP: o.minP ?? 0,
    repetitionPenalty: o.repetitionPenalty ?? 1,
    seed: o.seed ?? 0,
  };
  const bad = (field: string, expected: string, value: unknown): never => {
    throw new InputError(`Cannot generate: option "${field}" is ${value}, expected ${expected}`);
  };
  if (!(p.temperature >= 0) || !Number.isFinite(p.temperature)) {
    bad("temperature", "a number >= 0", p.temperature);
  }
  if (!Number.isInteger(p.topK) || p.topK < 0) bad("topK", "an integer >= 0", p.topK);
  if (!(p.topP > 0 && p.topP <= 1)) bad("topP", "a number in (0, 1]", p.topP);
  if (!(p.minP >= 0 && p.minP < 1)) bad("minP", "a number in [0, 1)", p.minP);
  if (!(p.repetitionPenalty > 0) || !Number.isFinite(p.repetitionPenalty)) {
    bad("repetitionPenalty", "a number > 0", p.repetitionPenalty);
  }
  if (!Number.isInteger(p.seed) || p.seed < 0 || p.seed > 0xffffffff) {
    bad("seed", "an integer in [0, 2^32)", p.seed);
  }
  return p;
}

/**
 * Generates from `prompts` (one id list per sequence; lengths may differ), yielding new ids as they are
 * read back. Stops at maxNewTokens, eos (unless ignoreEos), stopIds, or when `stopNow` says so.
 */
export async function* decode(
  net: Network,
  prompts: number[][],
  opts: GenerateOptions,
  eosId?: number,
): AsyncGenerator<DecodeChunk, void, boolean | undefined> {
  const be = net.backend;
  const c = net.config;
  const params = samplingParams(opts);
  const maxNew = opts.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNew) || maxNew < 0) {
    throw new InputError(`Cannot generate: option "maxNewTokens" is ${maxNew}, expected an integer >= 0`);
  }
  if (prompts.length === 0) throw new InputError("Cannot generate: no prompts, expected at least one");
  prompts.forEach((p, i) => checkIds(p, c.vocabSize, `prompt ${i}`));
  for (const id of opts.stopIds ?? []) checkIds([id], c.vocabSize, "stopIds");
  const b = prompts.length;
  if (opts.state && opts.state.batch !== b) {
    throw new InputError(
      `Cannot generate: state holds ${opts.state.batch} sequences, expected ${b} (one per prompt)`,
    );
  }
  if (maxNew === 0) return;
  opts.signal?.throwIfAborted();

  const stops = new Set(opts.stopIds ?? []);
  if (eosId !== undefined && !opts.ignoreEos) stops.add(eosId);
  const state = opts.state ?? net.newState(b);
  const k = Math.max(1, be.stepsPerRead);
  const tokens = be.zeros([k + 1, b], "i32"); // (rows, b): row 0 holds the last sampled ids
  const last = be.zeros([b, c.dModel]); // (b, d)
  const normed = be.zeros([b, c.dModel]); // (b, d)
  const logits = be.zeros([b, c.vocabSize]); // (b, v)
  const seen = params.repetitionPenalty !== 1 ? markSeen(be, prompts, c.vocabSize) : undefined;
  try {
    prefill(net, state, prompts, last);
    net.head(logits, normed, last);
    be.sample({ out: tokens, outRow: 0, logits, params, step: state.draws++, seen });
    if (k > 1 && !opts.state) {
      yield* pipelined(net, tokens, logits, normed, state, params, seen, b, maxNew, stops, opts.signal);
      return;
    }
    const tally = new Tally(b, maxNew, stops);
    let fromRow = 0; // first row of `tokens` not yet read
    let rows = 1; // rows sampled in this cycle
    while (true) {
      const stopNow = yield tally.take(await be.readIds(tokens), fromRow, rows);
      if (stopNow || tally.finished) return;
      opts.signal?.throwIfAborted();
      // Next cycle: step on the newest sampled row, sampling into rows 1..steps.
      if (rows > 1 || fromRow > 0) be.copy(tokens, tokens, 0, (rows - 1) * b, b);
      const steps = Math.min(k, maxNew - tally.produced);
      issueSteps(net, tokens, logits, normed, state, params, seen, b, steps);
      fromRow = 1;
      rows = steps + 1;
    }
  } finally {
    for (const t of [tokens, last, normed, logits, seen]) if (t) be.free(t);
    if (!opts.state) state.dispose();
  }
}

/** Steps `steps` times from row 0 of `tokens`, sampling into rows 1..steps. */
function issueSteps(
  net: Network,
  tokens: Tensor,
  logits: Tensor,
  normed: Tensor,
  state: State,
  params: SamplingParams,
  seen: Tensor | undefined,
  b: number,
  steps: number,
): void {
  const be = net.backend;
  for (let s = 0; s < steps; s++) {
    const ws = net.run(state, tokens, s * b, b, 1); // consumes row s
    net.head(logits, normed, ws.hidden);
    be.sample({ out: tokens, outRow: s + 1, logits, params, step: state.draws++, seen });
  }
}

/** Reads of sampled ids kept in flight by the pipelined loop. */
const READS_IN_FLIGHT = 4;
/**
 * Steps of the pipelined loop's first cycle; each next cycle takes twice as many, up to stepsPerRead.
 * The device idles until the first cycle is recorded and submitted, and the first ids arrive after
 * it: on an H100 at batch 32 the CPU records a step in ~0.8 ms, so a first cycle of 32 steps kept the
 * GPU idle for ~26 ms of a 512-token decode.
 */
const FIRST_CYCLE_STEPS = 4;

/**
 * The decode loop of backends whose reads cost a round trip (stepsPerRead > 1), on a private state:
 * the steps of the next cycles are issued before the ids of the earlier ones are read back, so the
 * device never waits for a read. Cycles grow from FIRST_CYCLE_STEPS steps to stepsPerRead. A read
 * returns the ids as they were when it was issued (the backend contract), so one `tokens` tensor
 * serves every cycle. Steps issued past a stop are wasted work on a state nobody sees afterwards.
 */
async function* pipelined(
  net: Network,
  tokens: Tensor,
  logits: Tensor,
  normed: Tensor,
  state: State,
  params: SamplingParams,
  seen: Tensor | undefined,
  b: number,
  maxNew: number,
  stops: Set<number>,
  signal: AbortSignal | undefined,
): AsyncGenerator<DecodeChunk, void, boolean | undefined> {
  const be = net.backend;
  const k = be.stepsPerRead;
  const reads: { ids: Promise<Int32Array>; fromRow: number; rows: number }[] = [];
  const read = (fromRow: number, rows: number) => {
    const ids = be.readIds(tokens);
    ids.catch(() => {}); // a read dropped after a stop must not surface as unhandled
    reads.push({ ids, fromRow, rows });
  };
  read(0, 1);
  let issued = 1; // ids sampled so far, per sequence
  let lastRow = 0; // row of `tokens` holding the newest sampled ids
  let next = Math.min(k, FIRST_CYCLE_STEPS); // steps of the next cycle
  const tally = new Tally(b, maxNew, stops);
  while (true) {
    while (reads.length < READS_IN_FLIGHT && issued < maxNew) {
      if (lastRow > 0) be.copy(tokens, tokens, 0, lastRow * b, b);
      const steps = Math.min(next, maxNew - issued);
      issueSteps(net, tokens, logits, normed, state, params, seen, b, steps);
      read(1, steps + 1);
      issued += steps;
      lastRow = steps;
      next = Math.min(k, 2 * next);
    }
    const cycle = reads.shift()!;
    const stopNow = yield tally.take(await cycle.ids, cycle.fromRow, cycle.rows);
    if (stopNow || tally.finished) return;
    signal?.throwIfAborted();
  }
}

/** Turns rows of read-back ids into per-sequence new ids, ending sequences at a stop id or maxNew. */
class Tally {
  produced = 0;
  readonly done: boolean[];

  constructor(private b: number, private maxNew: number, private stops: Set<number>) {
    this.done = new Array<boolean>(b).fill(false);
  }

  get finished(): boolean {
    return this.done.every(Boolean);
  }

  /** The ids of rows [fromRow, rows) of `got` (rows, b). */
  take(got: Int32Array, fromRow: number, rows: number): DecodeChunk {
    const chunk: DecodeChunk = { ids: Array.from({ length: this.b }, () => []), done: this.done };
    for (let r = fromRow; r < rows && this.produced < this.maxNew; r++, this.produced++) {
      for (let i = 0; i < this.b; i++) {
        if (this.done[i]) continue;
        const id = got[r * this.b + i];
        chunk.ids[i].push(id);
        if (this.stops.has(id)) this.done[i] = true;
      }
    }
    if (this.produced >= this.maxNew) this.done.fill(true);
    return chunk;
  }
}

/** A (b, v) tensor with 1 at every prompt token, for the repetition penalty. */
function markSeen(be: Backend, prompts: number[][], v: number): Tensor {
  const data = new Float32Array(prompts.length * v);
  prompts.forEach((p, i) => p.forEach((id) => (data[i * v + id] = 1)));
  const t = be.zeros([prompts.length, v]);
  be.write(t, data);
  return t;
}

/**
 * Runs every prompt through the network from `state`, leaving the last position's hidden state of each
 * sequence in `last` (b, d). Prompts of one length run as a batch; others one by one.
 */
export function prefill(net: Network, state: State, prompts: number[][], last: Tensor): void {
  const be = net.backend;
  const d = net.config.dModel;
  const b = prompts.length;
  const sameLength = prompts.every((p) => p.length === prompts[0].length);
  if (sameLength) {
    const l = prompts[0].length;
    for (let t0 = 0; t0 < l; t0 += PREFILL_CHUNK) {
      const lc = Math.min(PREFILL_CHUNK, l - t0);
      const ids = be.zeros([b * lc], "i32");
      be.write(ids, Int32Array.from(prompts.flatMap((p) => p.slice(t0, t0 + lc))));
      const ws = net.run(state, ids, 0, b, lc); // (b, lc, d)
      be.free(ids);
      if (t0 + lc === l) {
        for (let i = 0; i < b; i++) be.copy(last, ws.hidden, i * d, (i * lc + lc - 1) * d, d);
      }
    }
    return;
  }
  for (let i = 0; i < b; i++) {
    const one = net.newState(1);
    one.copySequence(state, i, 0);
    const lastOne = be.zeros([1, d]);
    prefill(net, one, [prompts[i]], lastOne);
    state.copySequence(one, 0, i);
    be.copy(last, lastOne, i * d, 0, d);
    be.free(lastOne);
    one.dispose();
  }
}
