/**
 * The byte-level tokenizer: each UTF-8 byte is a token (ids 0..255). Ids past 255 (vocab padding)
 * decode to nothing.
 *
 * @module
 */

import type { StreamDecoder, Tokenizer } from "./tokenizer.ts";

export class ByteTokenizer implements Tokenizer {
  readonly name = "bytes";

  encode(text: string): number[] {
    return [...new TextEncoder().encode(text)];
  }

  decode(ids: number[]): string {
    return new TextDecoder().decode(new Uint8Array(ids.filter((i) => i >= 0 && i < 256)));
  }

  decoder(): StreamDecoder {
    const td = new TextDecoder();
    return {
      push: (id) => (id >= 0 && id < 256 ? td.decode(new Uint8Array([id]), { stream: true }) : ""),
      flush: () => td.decode(),
    };
  }
}
