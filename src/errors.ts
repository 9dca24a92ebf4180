/**
 * Typed errors. Each message names the file, tensor or field at fault, what was expected and what was
 * found, with the action first and no final period.
 *
 * @module
 */

/** Base class of every error mamba-edge throws on purpose. */
export class MambaError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A config.json that is not JSON, lacks a field or holds a value out of range. */
export class ConfigError extends MambaError {}

/** A weights file (safetensors, PyTorch zip, index) that is malformed or disagrees with the config. */
export class ModelLoadError extends MambaError {}

/**
 * A file that could not be fetched whole (HTTP error, body cut short, stalled connection) or that an
 * offline load did not find in the download cache.
 */
export class DownloadError extends ModelLoadError {}

/** Input to a call (token ids, prompt, options) that the model cannot take. */
export class InputError extends MambaError {}

/** A serialized recurrent state that is corrupt, or belongs to another model. */
export class StateError extends MambaError {}

/** A backend that cannot be created or that failed while running (lost device, failed pipeline). */
export class BackendError extends MambaError {}
