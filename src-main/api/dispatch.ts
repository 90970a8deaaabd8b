// Validates a call against the contract's zod schema and runs its handler; failures become an envelope carrying
// the error's code, message and details (what crosses IPC and WebSocket intact).
import {
  apiInputs,
  type ApiMethod,
  type ApiParsed,
  type ApiResults,
  type Envelope,
} from '../../src-shared/api/contract'
import { toApiError } from './errorInfo'

export type ApiHandlers = { [M in ApiMethod]: (input: ApiParsed<M>) => Promise<ApiResults[M]> }

export function isApiMethod(m: unknown): m is ApiMethod {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(apiInputs, m)
}

export async function dispatch(handlers: ApiHandlers, method: unknown, input: unknown): Promise<Envelope> {
  if (!isApiMethod(method))
    return { ok: false, error: { code: 'E_BAD_INPUT', message: `unknown API method ${String(method).slice(0, 80)}` } }
  try {
    const parsed = apiInputs[method].parse(input) as never
    const result = await (handlers[method] as (i: never) => Promise<unknown>)(parsed)
    return { ok: true, result }
  } catch (e) {
    return { ok: false, error: toApiError(e) }
  }
}
