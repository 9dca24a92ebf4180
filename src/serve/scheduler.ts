/**
 * The scheduler: one model, many requests. Requests wait in a bounded FIFO queue; the scheduler runs
 * one batch at a time through the decode loop, so concurrent requests share the model's weights and
 * each decode step serves every sequence of the batch.
 *
 * Batching policy: the oldest waiting job opens a batch; later waiting jobs join it (in arrival order,
 * up to `maxBatch` sequences) when their sampling cannot tell the difference:
 * - greedy jobs (temperature 0) join greedy batches with the same repetition penalty;
 * - sampled jobs without a seed join batches with the same temperature, top_k, top_p, min_p and
 *   repetition penalty (they share one random seed; each sequence still draws its own numbers);
 * - a sampled job with a seed runs alone, so that its text depends on the seed only.
 * Streaming and non-streaming jobs batch alike. Jobs arriving while a batch runs wait for the next one
 * (no joining mid-flight). Each sequence stops on its own (eos, stop text, its max_tokens); the batch
 * runs until its last sequence stops or every client of it has gone.
 *
 * @module
 */

import type { SamplingParams } from "../backends/backend.ts";
import { decode } from "../generate/generate.ts";
import type { Model } from "../model/model.ts";
import type { StreamDecoder } from "../tokenizer/tokenizer.ts";
import { HttpError } from "./errors.ts";
import { StopText } from "../generate/stop.ts";

/** Why a sequence ended, in OpenAI's words. */
export type FinishReason = "stop" | "length";

/** Where a job's output goes. Calls for one choice come in order; each choice ends exactly once. */
export interface JobSink {
  /** new text of one choice (never empty) */
  text(choice: number, text: string): void;
  /** the choice ended; `tokens`: tokens it generated (eos not counted) */
  finish(choice: number, reason: FinishReason, tokens: number): void;
  /** the whole job failed; no further calls follow */
  fail(error: unknown): void;
}

/** A unit of work: one sequence per choice, all with the same options. */
export interface Job {
  /** token ids per choice (already checked against the model) */
  prompts: number[][];
  maxTokens: number;
  stop: string[];
  sampling: SamplingParams;
  /** a chosen seed: the job then runs alone */
  seeded: boolean;
  /** aborted when the client goes away */
  signal?: AbortSignal;
  sink: JobSink;
}

/** Limits of the scheduler. */
export interface SchedulerOptions {
  /** most jobs waiting (not running); a job past it is refused with 429 */
  maxQueue: number;
  /** most sequences decoded together */
  maxBatch: number;
  /** the event loop gets a turn at least this often during a batch (ms), for I/O and new requests */
  yieldEveryMs?: number;
}

/** Counters, for /health and tests. */
export interface SchedulerStats {
  waiting: number;
  running: number;
  batches: number;
  completed: number;
  cancelled: number;
  failed: number;
  /** largest batch run so far, in sequences */
  largestBatch: number;
}

interface Row {
  job: Job;
  choice: number;
  dec: StreamDecoder;
  stop: StopText;
  tokens: number;
  done: boolean;
}

/** Runs jobs on one model, batching what can be batched. */
export class Scheduler {
  #queue: Job[] = [];
  #pumping: Promise<void> | undefined;
  #closed = false;
  #stats: SchedulerStats = {
    waiting: 0,
    running: 0,
    batches: 0,
    completed: 0,
    cancelled: 0,
    failed: 0,
    largestBatch: 0,
  };

  constructor(readonly model: Model, readonly opts: SchedulerOptions) {}

  /** The counters now. */
  stats(): SchedulerStats {
    return { ...this.#stats, waiting: this.#queue.length };
  }

  /** Queues a job; throws HttpError 429 when the queue is full, 503 once closed. */
  submit(job: Job): void {
    if (this.#closed) {
      throw new HttpError(503, "Cannot queue request: the server is shutting down", "server_error");
    }
    if (this.#queue.length >= this.opts.maxQueue) {
      throw new HttpError(
        429,
        `Cannot queue request: ${this.#queue.length} requests are waiting, expected fewer than ${this.opts.maxQueue} (option maxQueue); retry later`,
        "rate_limit_error",
        null,
        "queue_full",
        { "retry-after": "1" },
      );
    }
    if (job.signal?.aborted) return;
    this.#queue.push(job);
    job.signal?.addEventListener("abort", () => {
      const at = this.#queue.indexOf(job);
      if (at >= 0) {
        this.#queue.splice(at, 1);
        this.#stats.cancelled++;
      }
    }, { once: true });
    this.#pumping ??= this.#pump().finally(() => (this.#pumping = undefined));
  }

  /** Refuses new jobs, fails the waiting ones (503) and waits for the running batch. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) {
      job.sink.fail(new HttpError(503, "Cannot run request: the server is shutting down", "server_error"));
    }
    await this.#pumping;
  }

  async #pump(): Promise<void> {
    while (this.#queue.length > 0) {
      // Let requests that arrived together reach the queue before the batch is chosen.
      await new Promise((r) => setTimeout(r, 0));
      const batch = this.#take();
      if (batch.length > 0) await this.#run(batch);
    }
  }

  /** The oldest job and the waiting jobs that may join it. */
  #take(): Job[] {
    const first = this.#queue.shift();
    if (!first) return [];
    const batch = [first];
    const key = batchKey(first);
    if (key === undefined) return batch;
    let rows = first.prompts.length;
    for (let i = 0; i < this.#queue.length && rows < this.opts.maxBatch;) {
      const job = this.#queue[i];
      if (batchKey(job) === key && rows + job.prompts.length <= this.opts.maxBatch) {
        batch.push(job);
        rows += job.prompts.length;
        this.#queue.splice(i, 1);
      } else i++;
    }
    return batch;
  }

  async #run(jobs: Job[]): Promise<void> {
    const model = this.model;
    const eos = model.config.eosTokenId;
    const rows: Row[] = jobs.flatMap((job) =>
      job.prompts.map((_, choice) => ({
        job,
        choice,
        dec: model.tokenizer.decoder(),
        stop: new StopText(job.stop),
        tokens: 0,
        done: false,
      }))
    );
    const st = this.#stats;
    st.batches++;
    st.running += jobs.length;
    st.largestBatch = Math.max(st.largestBatch, rows.length);
    const live = new Set(jobs);
    const abort = new AbortController();
    const end = (job: Job, how: "completed" | "cancelled" | "failed") => {
      if (!live.delete(job)) return;
      st.running--;
      st[how]++;
      if (live.size === 0) abort.abort(new DOMException("every client has gone", "AbortError"));
    };
    const finish = (row: Row, reason: FinishReason) => {
      row.done = true;
      row.job.sink.finish(row.choice, reason, row.tokens);
      if (rows.every((r) => r.done || r.job !== row.job)) end(row.job, "completed");
    };
    const emit = (row: Row, piece: string): boolean => {
      const { text, stopped } = row.stop.push(piece);
      if (text) row.job.sink.text(row.choice, text);
      if (stopped) finish(row, "stop");
      return stopped;
    };
    const endOfText = (row: Row, reason: FinishReason) => {
      if (emit(row, row.dec.flush())) return;
      const rest = row.stop.end();
      if (rest) row.job.sink.text(row.choice, rest);
      finish(row, reason);
    };
    const onAbort = (job: Job) => () => {
      for (const r of rows) if (r.job === job) r.done = true;
      end(job, "cancelled");
    };
    const listeners = jobs.map((job) => {
      const f = onAbort(job);
      if (job.signal?.aborted) f();
      else job.signal?.addEventListener("abort", f, { once: true });
      return f;
    });

    for (const row of rows) if (row.job.maxTokens === 0) endOfText(row, "length");
    const maxNew = Math.max(...jobs.map((j) => j.maxTokens));
    const gen = decode(model.network, rows.map((r) => r.job.prompts[r.choice]), {
      ...jobs[0].sampling,
      maxNewTokens: maxNew,
      signal: abort.signal,
    }, eos);
    const every = this.opts.yieldEveryMs ?? 10;
    let lastYield = performance.now();
    try {
      let res = rows.some((r) => !r.done) ? await gen.next() : { done: true as const, value: undefined };
      while (!res.done) {
        res.value.ids.forEach((ids, i) => {
          const row = rows[i];
          for (const id of ids) {
            if (row.done) break;
            if (id === eos) {
              endOfText(row, "stop");
              break;
            }
            row.tokens++;
            if (emit(row, row.dec.push(id))) break;
            if (row.tokens >= row.job.maxTokens) endOfText(row, "length");
          }
        });
        if (rows.every((r) => r.done)) break;
        if (performance.now() - lastYield >= every) {
          await new Promise((r) => setTimeout(r, 0));
          lastYield = performance.now();
        }
        res = await gen.next();
      }
      for (const row of rows) if (!row.done) endOfText(row, "length");
    } catch (e) {
      if (!abort.signal.aborted) {
        for (const job of [...live]) {
          end(job, "failed");
          job.sink.fail(e);
        }
      }
    } finally {
      await gen.return();
      jobs.forEach((job, i) => job.signal?.removeEventListener("abort", listeners[i]));
      for (const job of [...live]) end(job, "completed");
    }
  }
}

/** Jobs with one key decode together; undefined: the job runs alone. */
function batchKey(job: Job): string | undefined {
  const s = job.sampling;
  if (s.temperature === 0) return `greedy ${s.repetitionPenalty}`;
  if (job.seeded) return undefined;
  return `sampled ${s.temperature} ${s.topK} ${s.topP} ${s.minP} ${s.repetitionPenalty}`;
}
