// The one mapping from a thrown value to the {code, message, details} that crosses IPC, WebSocket and the engine
// host's channel (docs/architecture.md#errors): the API dispatcher and the engine host both answer failures with it.
import { z } from 'zod'
import type { ApiErrorInfo } from '../../src-shared/api/contract'
import { errorMessage } from '../services/errors'

/**
 * A zod validation error is bad input (its first issue in the message, every issue in details); anything carrying a
 * string `code` (StudioError, the addon's coded errors) keeps it; the rest is E_INTERNAL. Empty details are left out.
 */
export function toApiError(e: unknown): ApiErrorInfo {
  if (e instanceof z.ZodError) {
    const first = e.issues[0]
    const where = first?.path.length ? `${first.path.join('.')}: ` : ''
    return {
      code: 'E_BAD_INPUT',
      message: `${where}${first?.message ?? 'invalid input'}`,
      details: { issues: e.issues.map((i) => ({ path: i.path.map(String), message: i.message })) },
    }
  }
  const code = (e as { code?: unknown })?.code
  const details = (e as { details?: unknown })?.details
  return {
    code: typeof code === 'string' ? code : 'E_INTERNAL',
    message: errorMessage(e),
    ...(details && typeof details === 'object' && Object.keys(details).length
      ? { details: details as Record<string, unknown> }
      : {}),
  }
}
