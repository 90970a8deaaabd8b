// StudioError: the one error type services throw for conditions a user can act on (bad model dir, bad input file).
// Codes mirror the native engine's (docs/architecture.md#errors: E_OOM, E_NO_CUDA, E_BAD_MODEL, E_BAD_INPUT,
// E_CANCELLED).

/** Known codes; other strings are allowed so native codes pass through unchanged. */
export type StudioErrorCode =
  | 'E_BAD_MODEL'
  | 'E_BAD_INPUT'
  | 'E_IO'
  | 'E_OOM'
  | 'E_NO_CUDA'
  | 'E_CANCELLED'
  | 'E_INTERNAL'
  | 'E_DEVICE_FAULT'
  | (string & {})

export interface StudioErrorOptions {
  cause?: unknown
  /** Machine-readable context (file, row, field, ...) for the UI; the message already says it in words. */
  details?: Record<string, unknown>
}

export class StudioError extends Error {
  readonly code: StudioErrorCode
  readonly details: Record<string, unknown>

  constructor(code: StudioErrorCode, message: string, options: StudioErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'StudioError'
    this.code = code
    this.details = options.details ?? {}
  }
}

export function isStudioError(e: unknown): e is StudioError {
  return e instanceof StudioError
}

/** Message of an unknown thrown value, for wrapping library errors. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
