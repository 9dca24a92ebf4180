/**
 * A checkpoint's tensors by name, from whichever files the source holds: model.safetensors, a sharded
 * safetensors index (model.safetensors.index.json), a reader registered for other formats
 * (pytorch_model.bin, through the restricted unpickler of torch.ts), or a sharded PyTorch index
 * (pytorch_model.bin.index.json).
 *
 * @module
 */

import { ModelLoadError } from "../errors.ts";
import { type RawTensor, readSafetensors } from "./safetensors.ts";
import { type ModelSource, readRequired } from "./source.ts";
import { readTorchCheckpoint } from "./torch.ts";

/** A reader for one more checkpoint format: claims a file name and parses its bytes. */
export interface CheckpointFormat {
  file: string;
  read(bytes: Uint8Array, file: string): Map<string, RawTensor> | Promise<Map<string, RawTensor>>;
}

/** Formats tried after safetensors, in order (PyTorch's pytorch_model.bin registers here). */
export const extraFormats: CheckpointFormat[] = [{ file: "pytorch_model.bin", read: readTorchCheckpoint }];

/** All tensors of the checkpoint in `src`. */
export async function readCheckpoint(src: ModelSource): Promise<Map<string, RawTensor>> {
  const single = await src.read("model.safetensors");
  if (single) return readSafetensors(single, `${src.name}/model.safetensors`);
  const index = await src.read("model.safetensors.index.json");
  if (index) return await readSharded(src, index, "model.safetensors.index.json", readSafetensors);
  for (const f of extraFormats) {
    const bytes = await src.read(f.file);
    if (bytes) return await f.read(bytes, `${src.name}/${f.file}`);
  }
  const binIndex = await src.read(TORCH_INDEX);
  if (binIndex) return await readSharded(src, binIndex, TORCH_INDEX, readTorchCheckpoint);
  const names = [
    "model.safetensors",
    "model.safetensors.index.json",
    ...extraFormats.map((f) => f.file),
    TORCH_INDEX,
  ];
  throw new ModelLoadError(`Cannot load weights from ${src.name}: found none of ${names.join(", ")}`);
}

const TORCH_INDEX = "pytorch_model.bin.index.json";

/** A sharded checkpoint: an index whose weight_map names each tensor's shard, read by `read`. */
async function readSharded(
  src: ModelSource,
  indexBytes: Uint8Array,
  indexName: string,
  read: CheckpointFormat["read"],
): Promise<Map<string, RawTensor>> {
  const file = `${src.name}/${indexName}`;
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(new TextDecoder().decode(indexBytes));
  } catch (e) {
    throw new ModelLoadError(`Cannot read ${file}: expected JSON, found ${(e as Error).message}`);
  }
  const map = index.weight_map;
  if (!map || typeof map !== "object") {
    throw new ModelLoadError(`Cannot read ${file}: field "weight_map" is missing, expected an object`);
  }
  const out = new Map<string, RawTensor>();
  for (const shard of new Set(Object.values(map))) {
    const tensors = await read(await readRequired(src, shard), `${src.name}/${shard}`);
    for (const [name, t] of tensors) out.set(name, t);
  }
  for (const [name, shard] of Object.entries(map)) {
    if (!out.has(name)) {
      throw new ModelLoadError(
        `Cannot read ${file}: tensor "${name}" is listed in ${shard} but not found there`,
      );
    }
  }
  return out;
}
