// @vitest-environment happy-dom
// Components: the generated parameter form (fields, help, validation messages, presets), the word diff view, the
// dataset's live pairs summary, and the chart composable's lifecycle (ECharts instance disposed on unmount).
import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { defineComponent, h, ref } from 'vue'
import { setApi } from '../../../src-renderer/src/api/client'
import ParamsView from '../../../src-renderer/src/components/params/ParamsView.vue'
import ResponsesDiff from '../../../src-renderer/src/components/responses/ResponsesDiff.vue'
import { useParamsStore } from '../../../src-renderer/src/stores/params'
import { fakeApi } from './fakeApi'

const chart = { setOption: vi.fn(), resize: vi.fn(), dispose: vi.fn() }
vi.mock('echarts/core', () => ({ init: vi.fn(() => chart), use: vi.fn() }))
vi.mock('echarts/charts', () => ({ LineChart: {} }))
vi.mock('echarts/components', () => ({
  GridComponent: {},
  LegendComponent: {},
  MarkLineComponent: {},
  TooltipComponent: {},
}))
vi.mock('echarts/renderers', () => ({ CanvasRenderer: {} }))

let pinia: ReturnType<typeof createPinia>
beforeEach(() => {
  localStorage.clear()
  setApi(fakeApi({}).api)
  pinia = createPinia()
  setActivePinia(pinia)
})

describe('ParamsView', () => {
  it('renders every schema field with its notebook name, default and range', () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const form = w.get('[data-testid="param-form"]')
    expect(form.findAll('[data-testid^="param-"]').length).toBeGreaterThan(20)
    const beta = w.get('[data-testid="param-beta"]')
    expect(beta.text()).toContain('beta')
    expect(beta.text()).toContain('Default 0.1')
    expect(beta.text()).toContain('> 0')
    expect(
      w
        .get('[data-testid="param-lossType"]')
        .findAll('button')
        .map((b) => b.text()),
    ).toEqual(['sigmoid', 'ipo', 'hinge', 'robust'])
  })

  it('shows a validation message when a value is out of range, and presets fix it', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    await w.get('[data-testid="param-beta"] [data-testid="number-input"]').setValue('0')
    expect(w.get('[data-testid="param-beta"]').text()).toContain('Must be greater than 0')
    expect(w.find('[data-testid="params-invalid"]').exists()).toBe(true)
    await w.get('[data-testid="preset-notebook"]').trigger('click')
    expect(w.find('[data-testid="params-invalid"]').exists()).toBe(false)
    await w.get('[data-testid="preset-quick"]').trigger('click')
    expect(useParamsStore().values.dataSize).toBe(16)
  })

  it('shows the template variables a run records: Qwen3 thinking mode and the template date', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const thinking = w.get('[data-testid="param-enableThinking"]')
    expect(thinking.text()).toContain('enable_thinking')
    expect(thinking.findAll('button').map((b) => b.text())).toEqual(['default', 'on', 'off'])
    await thinking.findAll('button')[2]!.trigger('click')
    expect(useParamsStore().values.enableThinking).toBe('off')
    const date = w.get('[data-testid="param-chatDate"]')
    expect(date.text()).toContain('strftime_now')
    await date.get('textarea').setValue('5 Mar 2026')
    expect(w.get('[data-testid="param-chatDate"]').text()).toContain('YYYY-MM-DD')
    await date.get('textarea').setValue('2026-03-05')
    expect(w.find('[data-testid="params-invalid"]').exists()).toBe(false)
    expect(useParamsStore().values.chatDate).toBe('2026-03-05')
  })

  it('edits target modules as a checkbox group', async () => {
    const w = mount(ParamsView, { global: { plugins: [pinia] } })
    const boxes = w.get('[data-testid="param-targets"]').findAll('input[type=checkbox]')
    await boxes[1]!.setValue(true) // k_proj
    expect(useParamsStore().values.targets).toEqual(['q_proj', 'v_proj', 'k_proj'])
  })
})

describe('ResponsesDiff', () => {
  it('renders removed and added words with counts', () => {
    const w = mount(ResponsesDiff, { props: { before: '真人化能夠提升原作魅力。', after: '真人化可能損害原作魅力。' } })
    expect(w.find('.removed').exists()).toBe(true)
    expect(w.find('.added').exists()).toBe(true)
    expect(w.get('[data-testid="diff-added"]').text()).toMatch(/^\+\d+ chars$/)
    const same = mount(ResponsesDiff, { props: { before: 'a', after: 'a' } })
    expect(same.text()).toContain('identical')
  })
})

describe('useChart', () => {
  it('keeps one ECharts instance, updates it, and disposes it on unmount', async () => {
    const { useChart } = await import('../../../src-renderer/src/composables/useChart')
    const data = ref([1])
    const C = defineComponent({
      setup() {
        const el = ref<HTMLElement | null>(null)
        useChart(el, () => ({ series: [{ data: data.value }] }))
        return () => h('div', { ref: el })
      },
    })
    const w = mount(C)
    expect(chart.setOption).toHaveBeenCalledTimes(1)
    data.value = [1, 2]
    await new Promise((r) => setTimeout(r, 0))
    expect(chart.setOption).toHaveBeenCalledTimes(2)
    // Updates replace the axes: a range set for the first point (one value) must not stay once the data spreads.
    expect(chart.setOption.mock.calls[1]![1]).toMatchObject({ replaceMerge: ['xAxis', 'yAxis', 'series'] })
    w.unmount()
    expect(chart.dispose).toHaveBeenCalledTimes(1)
  })
})
