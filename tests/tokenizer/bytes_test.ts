import assert from "node:assert/strict";
import { ByteTokenizer } from "../../src/tokenizer/bytes.ts";

Deno.test("ByteTokenizer round-trips UTF-8 text", () => {
  const t = new ByteTokenizer();
  const text = "ROMEO: é ✓ 😀\n";
  assert.deepEqual(t.encode("é"), [0xc3, 0xa9]);
  assert.equal(t.decode(t.encode(text)), text);
});

Deno.test("ByteTokenizer's stream decoder never splits a character across pieces", () => {
  const t = new ByteTokenizer();
  const text = "a😀bé✓";
  const dec = t.decoder();
  const pieces = t.encode(text).map((id) => dec.push(id));
  pieces.push(dec.flush());
  assert.equal(pieces.join(""), text);
  for (const piece of pieces) {
    assert.ok(!/[\ud800-\udbff]$/.test(piece) && !piece.includes("\ufffd"), JSON.stringify(piece));
  }
  assert.deepEqual(pieces.filter((x) => x), ["a", "😀", "b", "é", "✓"]);
});
