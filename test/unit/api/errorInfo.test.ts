// toApiError: the one thrown-value-to-{code, message, details} mapping the dispatcher and the engine host share.
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { toApiError } from '../../../src-main/api/errorInfo'
import { StudioError } from '../../../src-main/services/errors'

describe('toApiError', () => {
  it('keeps a coded engine error with its details', () => {
    const e = Object.assign(new Error('out of memory on cuda:0'), { code: 'E_OOM', details: { bytes: 1024 } })
    expect(toApiError(e)).toEqual({ code: 'E_OOM', message: 'out of memory on cuda:0', details: { bytes: 1024 } })
  })

  it('keeps a StudioError code and leaves empty details out', () => {
    expect(toApiError(new StudioError('E_BAD_MODEL', 'no config.json'))).toEqual({
      code: 'E_BAD_MODEL',
      message: 'no config.json',
    })
  })

  it('makes a zod validation error bad input naming the first field, with every issue in details', () => {
    const schema = z.object({ params: z.object({ beta: z.number() }), name: z.string() })
    const r = schema.safeParse({ params: { beta: 'x' }, name: 3 })
    expect(r.success).toBe(false)
    const info = toApiError(r.error)
    expect(info.code).toBe('E_BAD_INPUT')
    expect(info.message.startsWith('params.beta: ')).toBe(true)
    expect(info.details).toEqual({
      issues: [
        { path: ['params', 'beta'], message: expect.any(String) },
        { path: ['name'], message: expect.any(String) },
      ],
    })
  })

  it('makes anything else E_INTERNAL with its message and no details', () => {
    expect(toApiError(new TypeError('x is undefined'))).toEqual({ code: 'E_INTERNAL', message: 'x is undefined' })
    expect(toApiError('a string')).toEqual({ code: 'E_INTERNAL', message: 'a string' })
    expect(toApiError(Object.assign(new Error('numeric code'), { code: 5 }))).toEqual({
      code: 'E_INTERNAL',
      message: 'numeric code',
    })
  })
})
