/**
 * mamba-edge: Mamba state-space language models (Mamba-1 and Mamba-2) in Deno, browsers, edge workers
 * and Node, on WebGPU, SIMD WebAssembly or plain JavaScript.
 *
 * @example
 * ```ts
 * import { loadModel } from "./mod.ts";
 * const model = await loadModel("models/shakespeare-bytes", { backend: "js" });
 * for await (const piece of model.generate("ROMEO:\n", { maxNewTokens: 40, temperature: 0.8, seed: 1 })) {
 *   console.log(piece.text);
 * }
 * await model.dispose();
 * ```
 *
 * @module
 */

export {
  DEFAULT_MODEL,
  type ForwardOptions,
  type ForwardResult,
  loadModel,
  type LoadOptions,
  Model,
  type ModelInput,
  type Piece,
} from "./src/model/model.ts";
export { State } from "./src/model/state.ts";
export { type Arch, type ModelConfig, parseConfig } from "./src/config.ts";
export type { GenerateOptions } from "./src/generate/generate.ts";
export type { Backend, BackendName, SamplingParams, WeightDType } from "./src/backends/backend.ts";
export type { BackendOptions } from "./src/backends/select.ts";
export type { StreamDecoder, Tokenizer } from "./src/tokenizer/tokenizer.ts";
export { ByteTokenizer } from "./src/tokenizer/bytes.ts";
export { gptNeoxTokenizer, HfTokenizer } from "./src/tokenizer/hf.ts";
export type { ModelSource } from "./src/io/source.ts";
export { type CompletionHandler, createHandler, type HandlerOptions } from "./src/serve/handler.ts";
export type { FinishReason, SchedulerStats } from "./src/serve/scheduler.ts";
export type { HubOptions, Progress } from "./src/io/hub.ts";
export { formatProgress, progressBar } from "./src/io/progress.ts";
export {
  BackendError,
  ConfigError,
  DownloadError,
  InputError,
  MambaError,
  ModelLoadError,
  StateError,
} from "./src/errors.ts";
