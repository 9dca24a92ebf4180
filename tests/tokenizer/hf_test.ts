import assert from "node:assert/strict";
import { GPT_NEOX_VOCAB, gptNeoxTokenizer, HfTokenizer } from "../../src/tokenizer/hf.ts";
import { ModelLoadError } from "../../src/errors.ts";
import { ByteTokenizer } from "../../src/tokenizer/bytes.ts";
import { defaultTokenizer } from "../../src/model/model.ts";
import { memorySource } from "../../src/io/source.ts";
import { parseConfig } from "../../src/config.ts";
import { FIXTURES } from "../_fixtures.ts";

interface Case {
  text: string;
  ids: number[];
  decoded: string;
}
const { cases } = JSON.parse(
  await Deno.readTextFile(new URL("gpt-neox-tokenizer-cases.json", FIXTURES)),
) as { cases: Case[] };

Deno.test("gptNeoxTokenizer() encodes and decodes every case as HF tokenizers does", async () => {
  const tok = await gptNeoxTokenizer();
  assert.ok(cases.length >= 19);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
    assert.equal(tok.decode(c.ids), c.decoded, JSON.stringify(c.text));
  }
});

Deno.test("HfTokenizer.decoder() streams every case, emitting text as soon as it is final", async () => {
  const tok = await gptNeoxTokenizer();
  for (const c of cases) {
    const dec = tok.decoder();
    let text = "";
    c.ids.forEach((id, i) => {
      const piece = dec.push(id);
      assert.ok(!piece.includes("\uFFFD"), `${JSON.stringify(c.text)}: piece ${i} splits a character`);
      text += piece;
      // Final text so far: the decoding of the ids so far, less an incomplete character at the end.
      const sofar = tok.decode(c.ids.slice(0, i + 1), { skipSpecialTokens: true }).replace(/\uFFFD+$/, "");
      assert.equal(text, sofar, `${JSON.stringify(c.text)} after ${i + 1} ids`);
    });
    text += dec.flush();
    assert.equal(text, tok.decode(c.ids, { skipSpecialTokens: true }), JSON.stringify(c.text));
  }
});

Deno.test("HfTokenizer.decoder() flushes an incomplete character as U+FFFD and leaves out special tokens", async () => {
  const tok = await gptNeoxTokenizer();
  const snake = tok.encode("🐍"); // one character in several byte-level tokens
  assert.ok(snake.length > 1);
  const dec = tok.decoder();
  assert.equal(dec.push(0), ""); // <|endoftext|>
  assert.equal(dec.push(snake[0]), "");
  assert.equal(dec.flush(), "\uFFFD");
  assert.equal(tok.decode([8262, 50279]), "Hey"); // 50279: embedding padding past the vocab
});

Deno.test("HfTokenizer refuses a tokenizer.json that is not one", () => {
  assert.throws(() => new HfTokenizer(new TextEncoder().encode("{oops"), {}, "x/tokenizer.json"), (e) => {
    assert.ok(e instanceof ModelLoadError);
    assert.match(e.message, /^Cannot read x\/tokenizer\.json: expected JSON, found/);
    return true;
  });
  assert.throws(
    () => new HfTokenizer({ version: "1.0" }, {}, "x/tokenizer.json"),
    /Cannot read x\/tokenizer\.json: field "model" is missing, expected a tokenizer model/,
  );
});

Deno.test("defaultTokenizer() takes tokenizer.json, else bytes, else GPT-NeoX by vocab", async () => {
  const cfg = (vocab: number) => parseConfig(JSON.stringify({ d_model: 64, n_layer: 1, vocab_size: vocab }));
  const neoxJson = await Deno.readFile(new URL("../../src/tokenizer/gpt-neox-20b.json", import.meta.url));
  const withJson = await defaultTokenizer(memorySource({ "tokenizer.json": neoxJson }, "m"), cfg(256));
  assert.ok(withJson instanceof HfTokenizer);
  assert.equal(withJson.name, "m/tokenizer.json");
  assert.ok(await defaultTokenizer(memorySource({}), cfg(256)) instanceof ByteTokenizer);
  assert.ok(await defaultTokenizer(memorySource({}), cfg(1000)) instanceof ByteTokenizer);
  const neox = await defaultTokenizer(memorySource({}), cfg(GPT_NEOX_VOCAB)); // padded to 50280
  assert.deepEqual(neox.encode("Hello my name is"), [12092, 619, 1416, 310]);
  await assert.rejects(
    defaultTokenizer(memorySource({}), cfg(100)),
    /vocab is 104 and there is no tokenizer\.json/,
  );
});
