/**
 * Stop sequences over streamed text: a tail is held back while it could still be the start of a stop
 * sequence, and everything from the first stop sequence on is dropped.
 *
 * @module
 */

/** Filters one sequence's streamed text for stop sequences. */
export class StopText {
  #stops: string[];
  #hold: number;
  #pending = "";

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
    this.#hold = Math.max(0, ...this.#stops.map((s) => s.length - 1));
  }

  /**
   * Adds `text`; returns the text safe to emit now and whether a stop sequence was found (then the
   * returned text ends just before it, and the filter must not be used again).
   */
  push(text: string): { text: string; stopped: boolean } {
    this.#pending += text;
    let first = -1;
    for (const s of this.#stops) {
      const i = this.#pending.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    if (first >= 0) {
      const out = this.#pending.slice(0, first);
      this.#pending = "";
      return { text: out, stopped: true };
    }
    // Hold back the longest tail that is the start of a stop sequence.
    const len = this.#pending.length;
    let keep = Math.min(this.#hold, len);
    while (keep > 0 && !this.#stops.some((s) => s.startsWith(this.#pending.slice(len - keep)))) keep--;
    let cut = len - keep;
    // Never split a surrogate pair between two pieces.
    const c = this.#pending.charCodeAt(cut - 1);
    if (cut > 0 && cut < this.#pending.length && c >= 0xd800 && c <= 0xdbff) cut--;
    const out = this.#pending.slice(0, cut);
    this.#pending = this.#pending.slice(cut);
    return { text: out, stopped: false };
  }

  /** The text still held back, at the end of the sequence. */
  end(): string {
    const out = this.#pending;
    this.#pending = "";
    return out;
  }
}
