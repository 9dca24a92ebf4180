// The npm package under Node (>= 20): load a model, continue a prompt greedily, print the result.
//
//   npm install mamba-edge
//   node node.mjs                                   # the embedded Shakespeare model, prompt "ROMEO:\n"
//   node node.mjs path/to/model-dir --prompt "Hello" --tokens 40
//   node node.mjs path/to/model-dir --ids "1,2,3;4,5,6" --json   # token ids in, ids out (one line of JSON)
//
// Options: --backend auto|wasm|js (default auto), --tokens N (default 80), --json.
// A model directory holds config.json and model.safetensors (HF or state-spaces layout).

import { parseArgs } from "node:util";
import { loadModel } from "mamba-edge";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    backend: { type: "string", default: "auto" },
    prompt: { type: "string", default: "ROMEO:\n" },
    ids: { type: "string" },
    tokens: { type: "string", default: "80" },
    json: { type: "boolean", default: false },
  },
});

const model = await loadModel(positionals[0], { backend: values.backend });
const opts = { maxNewTokens: Number(values.tokens), temperature: 0 };
try {
  if (values.ids !== undefined) {
    // one sequence per ";"-separated group of comma-separated ids
    const prompts = values.ids.split(";").map((seq) => seq.split(",").map(Number));
    const ids = await model.generateIds(prompts, opts);
    const out = { backend: model.backendName, arch: model.config.arch, ids };
    console.log(values.json ? JSON.stringify(out) : ids.map((row) => row.join(" ")).join("\n"));
  } else {
    const ids = [];
    let text = "";
    for await (const piece of model.generate(values.prompt, opts)) {
      if (piece.token >= 0) ids.push(piece.token);
      text += piece.text;
      if (!values.json) process.stdout.write(piece.text);
    }
    const out = { backend: model.backendName, arch: model.config.arch, ids: [ids], text };
    console.log(values.json ? JSON.stringify(out) : "");
  }
} finally {
  await model.dispose();
}
