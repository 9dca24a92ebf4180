/**
 * The CLI: streams a continuation of a prompt, then prints prompt and generation speed.
 *
 *   deno task demo
 *   deno task demo --prompt "JULIET:" --max-tokens 300 --temperature 0.7 --seed 3
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_MODEL, loadModel, MambaError, progressBar } from "../mod.ts";

const HELP = `mamba-edge: generate text with a Mamba model

Usage: deno task demo [options]

Options:
  --model <dir|url|repo>   model to load (default: the embedded shakespeare-bytes)
  --prompt <text>          text to continue (default: "ROMEO:\\n")
  --max-tokens <n>         new tokens at most (default: 200)
  --temperature <t>        0 for greedy (default: 0.8)
  --top-k <k>              keep the k most likely tokens, 0 for all (default: 0)
  --top-p <p>              nucleus sampling threshold (default: 0.95)
  --seed <n>               random seed (default: a random one, printed)
  --backend <name>         auto | webgpu | wasm | js (default: auto)
  --dtype <type>           f32 | f16 | bf16 | q8, where the backend packs weights (default: f32)
  --help                   this text

Example:
  deno task demo --prompt "JULIET:\\n" --max-tokens 120 --temperature 0.7 --seed 3`;

function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: Deno.args,
      options: {
        model: { type: "string" },
        prompt: { type: "string", default: "ROMEO:\n" },
        "max-tokens": { type: "string", default: "200" },
        temperature: { type: "string", default: "0.8" },
        "top-k": { type: "string", default: "0" },
        "top-p": { type: "string", default: "0.95" },
        seed: { type: "string" },
        backend: { type: "string", default: "auto" },
        dtype: { type: "string", default: "f32" },
        help: { type: "boolean", default: false },
      },
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}`);
    return Promise.resolve(2);
  }
  if (args.help) {
    console.log(HELP);
    return Promise.resolve(0);
  }
  return run(args);
}

function number(name: string, text: string): number {
  const v = Number(text);
  if (text.trim() === "" || !Number.isFinite(v)) {
    throw new MambaError(`Cannot parse --${name}: "${text}" is not a number`);
  }
  return v;
}

async function run(args: Record<string, string | boolean | undefined>): Promise<number> {
  const backend = args.backend as "auto";
  const seed = args.seed !== undefined
    ? number("seed", args.seed as string)
    : Math.floor(Math.random() * 2 ** 31);
  const opts = {
    maxNewTokens: number("max-tokens", args["max-tokens"] as string),
    temperature: number("temperature", args.temperature as string),
    topK: number("top-k", args["top-k"] as string),
    topP: number("top-p", args["top-p"] as string),
    seed,
  };
  const prompt = args.prompt as string;
  const t0 = performance.now();
  const model = await loadModel(args.model as string | undefined ?? DEFAULT_MODEL, {
    backend,
    dtype: args.dtype as "f32",
    onProgress: progressBar(),
  });
  const tLoad = performance.now();
  const c = model.config;
  console.error(
    `${model.source}: ${c.arch}, d_model ${c.dModel}, ${c.nLayer} layers, vocab ${c.vocabSize}; ` +
      `backend ${model.backendName}; loaded in ${(tLoad - t0).toFixed(0)} ms; seed ${seed}`,
  );
  const encoder = new TextEncoder();
  await Deno.stdout.write(encoder.encode(prompt));
  const promptTokens = model.tokenizer.encode(prompt).length;
  let first = 0, count = 0;
  const tStart = performance.now();
  for await (const piece of model.generate(prompt, opts)) {
    if (count++ === 0) first = performance.now();
    await Deno.stdout.write(encoder.encode(piece.text));
  }
  const tEnd = performance.now();
  await model.dispose();
  const prefillMs = first - tStart;
  const decodeS = (tEnd - first) / 1000;
  console.error(
    `\n\nprompt: ${promptTokens} tokens in ${prefillMs.toFixed(1)} ms (${
      (promptTokens / (prefillMs / 1000)).toFixed(1)
    } tokens/s, first token included)` +
      `\ngeneration: ${count} tokens in ${decodeS.toFixed(2)} s (${
        ((count - 1) / decodeS).toFixed(1)
      } tokens/s)`,
  );
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (e instanceof MambaError) {
      console.error(`${e.name}: ${e.message}`);
      Deno.exit(1);
    }
    throw e;
  }
}
