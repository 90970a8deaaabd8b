// A fake StudioApi for store and component tests: canned results per method, recorded calls, and a way to push events.
import { vi } from 'vitest'
import type { ApiEvent, StudioApi } from '../../../src-shared/api/contract'
import { API_METHOD_NAMES } from '../../../src-shared/api/methods'

export interface FakeApi {
  api: StudioApi
  calls: Array<{ method: string; input: unknown }>
  emit(e: ApiEvent): void
}

export function fakeApi(results: Partial<Record<string, (input: never) => unknown>>): FakeApi {
  const listeners = new Set<(e: ApiEvent) => void>()
  const calls: FakeApi['calls'] = []
  const api: Record<string, unknown> = {}
  for (const m of API_METHOD_NAMES) {
    api[m] = vi.fn(async (input: unknown) => {
      calls.push({ method: m, input })
      const f = results[m]
      if (!f) throw new Error(`fake api: ${m} not stubbed`)
      return f(input as never)
    })
  }
  api.onEvent = (l: (e: ApiEvent) => void) => {
    listeners.add(l)
    return () => listeners.delete(l)
  }
  return { api: api as StudioApi, calls, emit: (e) => listeners.forEach((l) => l(e)) }
}
