/**
 * HTTP errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
 *
 * @module
 */

import { MambaError } from "../errors.ts";

/** An error that becomes an HTTP response with an OpenAI-style error object. */
export class HttpError extends MambaError {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "invalid_request_error",
    readonly param: string | null = null,
    readonly code: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** The JSON body of an error. */
export function errorBody(e: HttpError): { error: Record<string, unknown> } {
  return { error: { message: e.message, type: e.type, param: e.param, code: e.code } };
}

/** A JSON response. */
export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/** The response of an error. */
export function errorResponse(e: HttpError): Response {
  return json(errorBody(e), e.status, e.headers);
}
