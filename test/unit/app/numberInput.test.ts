// @vitest-environment happy-dom
// Number fields (issue 12 items 1-2): the text stays as typed, it is parsed in one place (lib/numberText.ts), a value
// that does not parse is an error beside its field that blocks the run, and an emptied field never means "default".
import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { setApi } from '../../../src-renderer/src/api/client'
import ParamsView from '../../../src-renderer/src/components/params/ParamsView.vue'
import { parseNumberText } from '../../../src-renderer/src/lib/numberText'
import { validateParams } from '../../../src-renderer/src/lib/paramFields'
import { useParamsStore } from '../../../src-renderer/src/stores/params'
import { useRunStore } from '../../../src-renderer/src/stores/run'
import { fakeApi } from './fakeApi'

let pinia: ReturnType<typeof createPinia>
beforeEach(() => {
  localStorage.clear()
  setApi(fakeApi({}).api)
  pinia = createPinia()
  setActivePinia(pinia)
})

describe('parseNumberText', () => {
  it('reads the forms people type, exactly', () => {
    expect(parseNumberText('.05')).toEqual({ ok: true, value: 0.05 })
    expect(parseNumberText('1e-10')).toEqual({ ok: true, value: 1e-10 })
    expect(parseNumberText('.0002')).toEqual({ ok: true, value: 0.0002 })
    expect(parseNumberText(' 2E4 ')).toEqual({ ok: true, value: 20000 })
    expect(parseNumberText('5.')).toEqual({ ok: true, value: 5 })
    expect(parseNumberText('-3')).toEqual({ ok: true, value: -3 })
  })

  it('refuses what is not a number, with the reason', () => {
    expect(parseNumberText('')).toEqual({ ok: false, error: 'Empty: enter a number' })
    expect(parseNumberText('abc')).toEqual({ ok: false, error: '“abc” is not a number' })
    expect(parseNumberText('1e-')).toEqual({ ok: false, error: '“1e-” is not a number' })
    expect(parseNumberText('0,05')).toEqual({ ok: false, error: 'Use a dot for decimals: 0.05' })
    expect(parseNumberText('0x10').ok).toBe(false)
    expect(parseNumberText('Infinity').ok).toBe(false)
    expect(parseNumberText('1e400')).toEqual({ ok: false, error: '1e400 is too large' })
  })

  it('validateParams: text in a number field is an error of that field, an empty one names the default', () => {
    const r = validateParams({ epochs: '', beta: 'x' } as never)
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.errors.epochs).toBe('Empty: enter a number (default 1)')
    expect(r.errors.beta).toBe('“x” is not a number')
    expect(validateParams({ beta: '0.05' } as never)).toMatchObject({ ok: true, value: { beta: 0.05 } })
  })
})

describe('number fields in the parameter form', () => {
  const input = (w: ReturnType<typeof mount>, key: string) =>
    w.get(`[data-testid="param-${key}"] [data-testid="number-input"]`)
  /** Typing without leaving the field (setValue also fires change, as leaving it does). */
  const type = async (w: ReturnType<typeof mount>, key: string, text: string) => {
    ;(input(w, key).element as HTMLInputElement).value = text
    await input(w, key).trigger('input')
  }

  it('keeps ".05", "1e-10" and ".0002" as typed and stores their values', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const params = useParamsStore()
    await input(w, 'beta').setValue('.05')
    expect((input(w, 'beta').element as HTMLInputElement).value).toBe('.05')
    expect(params.values.beta).toBe(0.05)
    await input(w, 'beta').setValue('1e-10')
    await input(w, 'beta').trigger('change')
    expect((input(w, 'beta').element as HTMLInputElement).value).toBe('1e-10')
    expect(params.values.beta).toBe(1e-10)
    await input(w, 'learningRate').setValue('.0002')
    await input(w, 'learningRate').trigger('change')
    expect((input(w, 'learningRate').element as HTMLInputElement).value).toBe('.0002')
    expect(params.resolved?.learningRate).toBe(0.0002)
  })

  it('half-typed text waits for blur; then it is an error beside the field and the run cannot start', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const params = useParamsStore()
    await type(w, 'beta', '1')
    await type(w, 'beta', '1e-')
    expect(params.values.beta).toBe(1) // "1" parsed on the way; nothing shown yet
    expect((input(w, 'beta').element as HTMLInputElement).value).toBe('1e-')
    expect(w.get('[data-testid="param-beta"]').find('[data-testid="field-error"]').exists()).toBe(false)
    await input(w, 'beta').trigger('change')
    expect(params.values.beta).toBe('1e-')
    expect(w.get('[data-testid="param-beta"] [data-testid="field-error"]').text()).toBe('“1e-” is not a number')
    expect(input(w, 'beta').attributes('aria-invalid')).toBe('true')
    expect(params.valid).toBe(false)
    expect(useRunStore().blockers).toContain('Fix the parameter errors: Beta (beta).')
    await type(w, 'beta', '0.2')
    expect(params.values.beta).toBe(0.2)
    expect(params.valid).toBe(true)
  })

  it('an emptied field is an error, never the default; a preset puts the text back', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const params = useParamsStore()
    params.set('epochs', 2)
    await w.vm.$nextTick()
    await input(w, 'epochs').setValue('')
    await input(w, 'epochs').trigger('change')
    expect(params.values.epochs).toBe('')
    expect(params.resolved).toBe(null)
    expect(w.get('[data-testid="param-epochs"] [data-testid="field-error"]').text()).toBe(
      'Empty: enter a number (default 1)',
    )
    await w.get('[data-testid="preset-stronger"]').trigger('click')
    expect((input(w, 'epochs').element as HTMLInputElement).value).toBe('3')
    expect(params.valid).toBe(true)
  })
})
