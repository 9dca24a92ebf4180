/**
 * The OpenAI-compatible completions server, as a module for `deno serve` and Deno Deploy:
 *
 *   deno serve --allow-read --allow-env --allow-net --port 8000 examples/edge.ts   (or: deno task serve)
 *   MODEL=path/to/model deno task serve
 *
 * The model (MODEL, else the embedded shakespeare-bytes) loads on the first completion request.
 *
 * @module
 */

import { createHandler } from "../mod.ts";

export default createHandler();
