/**
 * What the model needs of a tokenizer: text -> ids, and ids -> text streamed so that a piece never
 * splits a UTF-8 character.
 *
 * @module
 */

/** Turns a stream of ids into text pieces. */
export interface StreamDecoder {
  /** Text completed by this id (possibly empty while a character is incomplete). */
  push(id: number): string;
  /** Whatever is left (an incomplete character becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly name: string;
  encode(text: string): number[];
  decode(ids: number[]): string;
  decoder(): StreamDecoder;
}
