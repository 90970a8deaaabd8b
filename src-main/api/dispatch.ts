// Validates a call against the contract's zod schema and runs its handler; failures become an envelope carrying
// the error's code, message and details (what crosses IPC and WebSocket intact).
import { z } from 'zod'
import { apiInputs, type ApiErrorInfo, type ApiMethod, type ApiParsed, type ApiResults, type Envelope } from '../../src-shared/api/contract'
import { errorMessage } from '../services/errors'

export type ApiHandlers = { [M in ApiMethod]: (input: ApiParsed<M>) => Promise<ApiResults[M]> }

export function toApiError(e: unknown): ApiErrorInfo {
  if (e instanceof z.ZodError) {
    const first = e.issues[0]
    const where = first?.path.length ? `${first.path.join('.')}: ` : ''
    return { code: 'E_BAD_INPUT', message: `${where}${first?.message ?? 'invalid input'}`, details: { issues: e.issues.map((i) => ({ path: i.path.map(String), message: i.message })) } }
  }
  const code = (e as { code?: unknown })?.code
  const details = (e as { details?: unknown })?.details
  return {
    code: typeof code === 'string' ? code : 'E_INTERNAL',
    message: errorMessage(e),
    ...(details && typeof details === 'object' && Object.keys(details).length ? { details: details as Record<string, unknown> } : {}),
  }
}

export function isApiMethod(m: unknown): m is ApiMethod {
  return typeof m === 'string' && Object.prototype.hasOwnProperty.call(apiInputs, m)
}

export async function dispatch(handlers: ApiHandlers, method: unknown, input: unknown): Promise<Envelope> {
  if (!isApiMethod(method)) return { ok: false, error: { code: 'E_BAD_INPUT', message: `unknown API method ${String(method).slice(0, 80)}` } }
  try {
    const parsed = apiInputs[method].parse(input) as never
    const result = await (handlers[method] as (i: never) => Promise<unknown>)(parsed)
    return { ok: true, result }
  } catch (e) {
    return { ok: false, error: toApiError(e) }
  }
}
