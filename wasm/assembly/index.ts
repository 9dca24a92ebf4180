// mamba-edge CPU kernels: AssemblyScript compiled to SIMD WebAssembly (see scripts/build_wasm.ts).
// Every pointer is a byte offset into the one (imported, possibly shared) memory. Kernels that run
// in parallel take (lo, hi, tid) first: the share of the work of thread tid.
// This directory is left out of `deno fmt`, which deletes AssemblyScript's @inline decorators.

export { linear_bf16, linear_f16, linear_f32, linear_q8, pack_bf16, pack_f16, pack_q8 } from "./linear";
export { add, argmax_rows, bw_sum, embed16, embed_f32, embed_q8, gated_rms_norm, rms_norm } from "./ops";
export { conv1d_silu } from "./conv";
export { selective_scan, ssd_scan } from "./scan";

/** First byte after the module's own static data: the backend allocates from here. */
export function heap_base(): usize {
  return __heap_base;
}
