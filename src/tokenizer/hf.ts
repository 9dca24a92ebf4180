/**
 * Tokenizers in the Hugging Face `tokenizer.json` format, through @huggingface/tokenizers (the
 * JavaScript port of HF tokenizers; it reproduces every case of tests/fixtures/gpt-neox-tokenizer-cases.json).
 * The GPT-NeoX-20B tokenizer, which the state-spaces/mamba-* checkpoints use but do not ship, is bundled.
 *
 * @example
 * ```ts
 * import { gptNeoxTokenizer } from "./hf.ts";
 * const tok = await gptNeoxTokenizer();
 * tok.encode("Hey how are you doing?"); // [8262, 849, 403, 368, 2509, 32]
 * ```
 *
 * @module
 */

import { Tokenizer as HfTokenizerImpl } from "@huggingface/tokenizers";
import { ModelLoadError } from "../errors.ts";
import type { StreamDecoder, Tokenizer } from "./tokenizer.ts";

/** The vocab size of GPT-NeoX-20B's tokenizer (50,277 ids; models pad the embedding to 50,280). */
export const GPT_NEOX_VOCAB = 50277;

/** A tokenizer.json tokenizer. */
export class HfTokenizer implements Tokenizer {
  #impl: HfTokenizerImpl;
  #special: Set<number>;

  /**
   * `json`: tokenizer.json (parsed, text or bytes); `config`: tokenizer_config.json when there is one;
   * `name` names the tokenizer in errors.
   */
  constructor(json: unknown, config: unknown = {}, readonly name = "tokenizer.json") {
    let parsed = json;
    try {
      if (parsed instanceof Uint8Array) parsed = new TextDecoder().decode(parsed);
      if (typeof parsed === "string") parsed = JSON.parse(parsed);
      if (config instanceof Uint8Array) config = JSON.parse(new TextDecoder().decode(config));
    } catch (e) {
      throw new ModelLoadError(`Cannot read ${name}: expected JSON, found ${(e as Error).message}`);
    }
    const model = (parsed as { model?: { type?: string } })?.model;
    if (!model || typeof model !== "object") {
      throw new ModelLoadError(`Cannot read ${name}: field "model" is missing, expected a tokenizer model`);
    }
    try {
      this.#impl = new HfTokenizerImpl(parsed as object, (config ?? {}) as object);
    } catch (e) {
      throw new ModelLoadError(`Cannot read ${name}: ${(e as Error).message}`);
    }
    const added = (parsed as { added_tokens?: { id: number; special?: boolean }[] }).added_tokens ?? [];
    this.#special = new Set(added.filter((t) => t.special).map((t) => t.id));
  }

  /** Text -> ids, as HF encodes it (special tokens in the text are recognised; no BOS for GPT-NeoX). */
  encode(text: string): number[] {
    return text.length === 0 ? [] : this.#impl.encode(text).ids;
  }

  /** Ids -> text, as HF decodes it. Ids the vocab lacks (embedding padding) decode to nothing. */
  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    const known = ids.filter((id) => this.#impl.id_to_token(id) !== undefined);
    if (known.length === 0) return "";
    return this.#impl.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  /**
   * A streaming decoder: each push returns the text its id completes, as soon as that text is final (no
   * piece ends inside a UTF-8 character); special tokens (e.g. <|endoftext|>) are left out of the stream.
   */
  decoder(): StreamDecoder {
    return new IncrementalDecoder((ids) => this.decode(ids), (id) => this.#special.has(id));
  }
}

/**
 * Streams text from ids with any whole-sequence decode. The ids since the last point where all text was
 * complete are decoded together with the ids before that point (context, for decoders that look at
 * neighbours); what the decoding adds past the context and past what was already emitted is new, up to
 * a trailing U+FFFD (an incomplete character, held back until its bytes arrive).
 */
export class IncrementalDecoder implements StreamDecoder {
  #ids: number[] = []; // context ids, then the ids since
  #contextIds = 0;
  #context = ""; // the text of the context ids, not emitted again
  #emitted = 0; // characters past the context already emitted

  constructor(
    private decode: (ids: number[]) => string,
    private skip: (id: number) => boolean = () => false,
  ) {}

  push(id: number): string {
    if (this.skip(id)) return "";
    this.#ids.push(id);
    const body = this.#body();
    const stable = body.replace(/\uFFFD+$/, "");
    const text = stable.length > this.#emitted ? stable.slice(this.#emitted) : "";
    this.#emitted = Math.max(this.#emitted, stable.length);
    if (stable.length === body.length) {
      // Everything is complete: the ids since the last such point become the next context.
      this.#ids = this.#ids.slice(this.#contextIds);
      this.#contextIds = this.#ids.length;
      this.#context = this.decode(this.#ids);
      this.#emitted = 0;
    }
    return text;
  }

  flush(): string {
    const text = this.#body().slice(this.#emitted);
    this.#ids = [];
    this.#contextIds = 0;
    this.#context = "";
    this.#emitted = 0;
    return text;
  }

  #body(): string {
    const full = this.decode(this.#ids);
    return full.startsWith(this.#context) ? full.slice(this.#context.length) : full;
  }
}

let gptNeox: Promise<HfTokenizer> | undefined;

/** The GPT-NeoX-20B tokenizer (bundled as a JSON module: no file read, no download), built once. */
export function gptNeoxTokenizer(): Promise<HfTokenizer> {
  gptNeox ??= import("./gpt-neox-20b.json", { with: { type: "json" } }).then((m) =>
    new HfTokenizer(m.default, {}, "gpt-neox-20b")
  );
  return gptNeox;
}
