// The parameter form is generated from the one zod schema: every field, its default, bounds, help and notebook name;
// validation messages in plain words; presets that the schema accepts.
import { describe, expect, it } from 'vitest'
import { buildParamFields, PRESETS, validateParams } from '../../../src-renderer/src/lib/paramFields'
import { trainParamsSchema } from '../../../src-shared/params/trainParams'

describe('buildParamFields', () => {
  const fields = buildParamFields()
  const byKey = Object.fromEntries(fields.map((f) => [f.key, f]))

  it('has a field for every schema key, with the notebook defaults', () => {
    expect(fields.map((f) => f.key).sort()).toEqual(Object.keys(trainParamsSchema.shape).sort())
    expect(byKey.dataSize).toMatchObject({
      kind: 'integer',
      default: 50,
      min: 1,
      notebookName: 'data_size',
      group: 'Data',
    })
    expect(byKey.supportRatio).toMatchObject({ kind: 'number', default: 0.1, min: 0, max: 1, slider: true })
    expect(byKey.beta).toMatchObject({ default: 0.1, exclusiveMin: true })
    expect(byKey.lossType).toMatchObject({ kind: 'enum', options: ['sigmoid', 'ipo', 'hinge', 'robust'] })
    expect(byKey.targets).toMatchObject({ kind: 'multi', default: ['q_proj', 'v_proj'] })
    expect(byKey.systemMessage).toMatchObject({ kind: 'string', default: '回覆請少於20字' })
    expect(byKey.learningRate!.help).toMatch(/learning rate/i)
    for (const f of fields) expect(f.help.length, f.key).toBeGreaterThan(5)
  })
})

describe('validateParams', () => {
  it('names the field with a plain message', () => {
    const r = validateParams({ beta: 0, dataSize: 0, targets: [], epochs: 1.5 })
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.errors.beta).toBe('Must be greater than 0')
    expect(r.errors.dataSize).toBe('Must be at least 1')
    expect(r.errors.targets).toBe('Pick at least one')
    expect(r.errors.epochs).toBe('Enter a whole number')
    // Cross-field rules run once the fields themselves are valid.
    const r2 = validateParams({ maxLength: 64, maxPromptLength: 128 })
    expect(r2.ok ? null : r2.errors.maxPromptLength).toMatch(/smaller than maxLength/)
  })

  it('accepts every preset', () => {
    for (const p of PRESETS) expect(validateParams(p.values).ok, p.id).toBe(true)
  })
})
