// @vitest-environment happy-dom
// The built-in demo in the renderer: a fresh session opens the demo model and the sample dataset with its test
// prompts and starts the form from the Demo preset; a remembered choice wins; a real model puts the notebook's values
// back except in the fields the user changed; the demo paths are not remembered; the notice and badges show.
import { mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { nextTick } from 'vue'
import type { AppInfo, DemoInfo, ModelSummary } from '../../../src-shared/api/contract'
import { DEMO_NOTE, DEMO_PRESET } from '../../../src-shared/demo/demoPreset'
import { setApi } from '../../../src-renderer/src/api/client'
import AppSidebar from '../../../src-renderer/src/components/app/AppSidebar.vue'
import ModelsView from '../../../src-renderer/src/components/models/ModelsView.vue'
import { PRESETS } from '../../../src-renderer/src/lib/paramFields'
import { samePath, insidePath } from '../../../src-renderer/src/lib/paths'
import { useAppStore } from '../../../src-renderer/src/stores/app'
import { useDatasetStore } from '../../../src-renderer/src/stores/dataset'
import { useDemoStore } from '../../../src-renderer/src/stores/demo'
import { useModelsStore } from '../../../src-renderer/src/stores/models'
import { useParamsStore } from '../../../src-renderer/src/stores/params'
import { fakeApi, type FakeApi } from './fakeApi'

const DEMO: DemoInfo = {
  modelDir: '/app/resources/demo-model',
  datasetDir: '/app/resources/sample-dataset/zh',
  testPromptsPath: '/app/resources/sample-dataset/zh/test_prompt.json',
  note: DEMO_NOTE,
}
const REAL = '/models/Breeze-7B-Instruct-v1_0'

const flush = async () => {
  for (let i = 0; i < 4; i++) await new Promise((r) => setTimeout(r, 0))
}

function summary(dir: string): ModelSummary {
  return {
    dir,
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    supported: true,
    note: '',
    params: 1_700_000,
    layers: 4,
    hidden: 192,
    vocab: 881,
    dtype: 'bfloat16',
    checkpointBytes: 3_491_560,
    nf4Bytes: 1_000_000,
    hasTokenizer: true,
    hasChatTemplate: false,
    prequantized: false,
  }
}

let fake: FakeApi
let demoInfo: DemoInfo | null
let pinia: ReturnType<typeof createPinia>

beforeEach(() => {
  localStorage.clear()
  demoInfo = DEMO
  fake = fakeApi({
    appInfo: (): Partial<AppInfo> => ({ platform: 'web', training: true, nativeDialogs: false, demo: demoInfo }),
    modelInspect: (i: { dir: string }) => summary(i.dir),
    modelsList: () => ({ cacheDir: '/home/u/.cache/huggingface/hub', models: [] }),
    datasetOpen: (i: { path: string }) => ({
      datasetId: 'ds1',
      file: `${i.path}/labelled_data.json`,
      format: 'hw6',
      conversational: false,
      rowCount: 60,
      testPrompts: {
        path: `${i.path}/test_prompt.json`,
        prompts: Array.from({ length: 10 }, (_, k) => ({ id: k + 1, prompt: `q${k + 1}` })),
      },
    }),
    datasetRows: () => ({
      total: 2,
      matched: 2,
      offset: 0,
      rows: [
        {
          index: 1,
          id: 1,
          prompt: 'p1',
          first: '禁車能讓街道回到行人手中，提升城市生活品質。',
          second: '禁車可能限制市民的移動自由，損害生活便利。',
        },
        {
          index: 2,
          id: 2,
          prompt: 'p2',
          first: '禁車能減少廢氣排放，明顯改善市中心的空氣。',
          second: '禁車可能只是把車流推到周邊，無法真正改善空汙。',
        },
      ],
    }),
    datasetPairs: (i: { dataSize: number; supportRatio: number }) => {
      const total = Math.min(i.dataSize, 60)
      const supportCount = Math.floor(total * i.supportRatio)
      return { total, supportCount, opposeCount: total - supportCount, offset: 0, pairs: [] }
    },
  })
  setApi(fake.api)
  pinia = createPinia()
  setActivePinia(pinia)
})

/** What App.vue does on mount. */
async function start(): Promise<ReturnType<typeof useDemoStore>> {
  const demo = useDemoStore()
  await useAppStore().load()
  await demo.startSession()
  await flush()
  return demo
}

const demoValues = () => Object.fromEntries(Object.keys(DEMO_PRESET).map((k) => [k, useParamsStore().values[k]]))

describe('demo default', () => {
  it('a fresh session opens the demo model, the sample dataset and its test prompts, with the Demo preset', async () => {
    const demo = await start()
    const models = useModelsStore()
    const dataset = useDatasetStore()
    const params = useParamsStore()
    expect(fake.calls.find((c) => c.method === 'modelInspect')?.input).toEqual({ dir: DEMO.modelDir })
    expect(fake.calls.find((c) => c.method === 'datasetOpen')?.input).toEqual({ path: DEMO.datasetDir })
    expect(models.summary?.dir).toBe(DEMO.modelDir)
    expect(demo.modelActive).toBe(true)
    expect(demo.datasetActive).toBe(true)
    expect(dataset.prompts?.prompts).toHaveLength(10)
    expect(dataset.promptsPath).toBe(DEMO.testPromptsPath)
    expect(demoValues()).toEqual(DEMO_PRESET)
    expect(params.presetId).toBe('demo')
    expect(params.tunedFor).toBe('demo')
    // The pairs follow the preset: all 60 rows, 6 preferring "support" at the default ratio 0.1.
    expect(dataset.pairs).toMatchObject({ total: 60, supportCount: 6, opposeCount: 54 })
    // The demo paths are not remembered (the default anyway; the app folder may move), the values are.
    expect(localStorage.getItem('dpo-studio.modelDir')).toBe('')
    expect(localStorage.getItem('dpo-studio.datasetPath')).toBe('')
    expect(localStorage.getItem('dpo-studio.promptsPath')).toBe('')
    expect(JSON.parse(localStorage.getItem('dpo-studio.params')!)).toMatchObject(DEMO_PRESET)
    expect(localStorage.getItem('dpo-studio.paramsFor')).toBe('demo')
  })

  it('a remembered model and dataset are reopened instead, with the notebook values', async () => {
    localStorage.setItem('dpo-studio.modelDir', REAL)
    localStorage.setItem('dpo-studio.datasetPath', '/data/genai-hw6')
    const demo = await start()
    expect(fake.calls.filter((c) => c.method === 'modelInspect').map((c) => c.input)).toEqual([{ dir: REAL }])
    expect(fake.calls.filter((c) => c.method === 'datasetOpen').map((c) => c.input)).toEqual([
      { path: '/data/genai-hw6' },
    ])
    expect(demo.modelActive).toBe(false)
    expect(demo.datasetActive).toBe(false)
    expect(useParamsStore().presetId).toBe('notebook')
  })

  it('without a bundled demo nothing is opened', async () => {
    demoInfo = null
    const demo = await start()
    expect(fake.calls.some((c) => c.method === 'modelInspect' || c.method === 'datasetOpen')).toBe(false)
    expect(demo.modelActive).toBe(false)
    expect(useParamsStore().presetId).toBe('notebook')
  })

  it('the next session starts on the demo again with the values it left', async () => {
    await start()
    useParamsStore().set('supportRatio', 0.9)
    await flush()
    setActivePinia(createPinia())
    await start()
    const params = useParamsStore()
    expect(params.values.supportRatio).toBe(0.9)
    expect(demoValues()).toEqual(DEMO_PRESET)
    expect(params.tunedFor).toBe('demo')
  })
})

describe('preset switching', () => {
  it('lists the Demo preset and applies it', () => {
    const p = PRESETS.find((x) => x.id === 'demo')
    expect(p?.values).toEqual(DEMO_PRESET)
    const params = useParamsStore()
    params.applyPreset('demo')
    expect(params.presetId).toBe('demo')
    expect(params.resolved).toMatchObject({ dataSize: 60, epochs: 4, learningRate: 2e-3, maxNewTokens: 48, beta: 0.1 })
  })

  it('a real model restores the notebook values; the demo model brings the preset back', async () => {
    const demo = await start()
    const models = useModelsStore()
    const params = useParamsStore()
    await models.select(REAL)
    await flush()
    expect(demo.modelActive).toBe(false)
    expect(params.presetId).toBe('notebook')
    expect(params.changed).toEqual([])
    await demo.useDemoModel()
    await flush()
    expect(params.presetId).toBe('demo')
  })

  it('keeps the fields the user changed when the model changes kind', async () => {
    const demo = await start()
    const params = useParamsStore()
    params.set('epochs', 2) // a Demo preset field, edited
    params.set('supportRatio', 0.9) // not a preset field
    await useModelsStore().select(REAL)
    await flush()
    expect(params.values).toMatchObject({
      epochs: 2,
      supportRatio: 0.9,
      dataSize: 50,
      learningRate: 2e-4,
      maxNewTokens: 200,
    })
    expect(params.presetId).toBe(null)
    // On the real model the user sets the learning rate; back on the demo it stays, the untouched fields follow.
    params.set('learningRate', 1e-4)
    await demo.useDemoModel()
    await flush()
    expect(params.values).toMatchObject({
      epochs: 2,
      supportRatio: 0.9,
      dataSize: 60,
      learningRate: 1e-4,
      maxNewTokens: 48,
    })
  })

  it('reset goes back to the preset of the model in use', async () => {
    await start()
    const params = useParamsStore()
    params.set('beta', 0.5)
    params.reset()
    expect(params.presetId).toBe('demo')
    await useModelsStore().select(REAL)
    await flush()
    params.set('beta', 0.5)
    params.reset()
    expect(params.presetId).toBe('notebook')
  })

  it('does nothing while a folder is being read, or before the app info is in', async () => {
    const params = useParamsStore()
    const demo = useDemoStore()
    const models = useModelsStore()
    models.dir = DEMO.modelDir
    await flush()
    expect(demo.modelKind).toBe(null) // no app info yet
    expect(params.presetId).toBe('notebook')
  })
})

describe('stance labels', () => {
  it('labels answers with the side of the nearest sample answer while the sample dataset is open', async () => {
    const demo = await start()
    expect(demo.sampleRows).toHaveLength(2)
    expect(demo.stanceOf('禁車能減少廢氣，改善空氣。')).toBe('support')
    expect(demo.stanceOf('禁車可能限制移動自由。')).toBe('oppose')
    expect(demo.stanceOf('  ')).toBe(null)
    await useDatasetStore().open('/data/genai-hw6')
    await flush()
    expect(demo.datasetActive).toBe(false)
    expect(demo.sampleRows).toBe(null)
    expect(demo.stanceOf('禁車可能限制移動自由。')).toBe(null)
  })
})

describe('paths', () => {
  it('compares paths across separators and trailing slashes', () => {
    expect(samePath('/a/b/', '/a/b')).toBe(true)
    expect(samePath('C:\\App\\resources\\demo-model', 'c:/app/resources/demo-model/')).toBe(true)
    expect(samePath('/a/b', '/a/bc')).toBe(false)
    expect(samePath('', '')).toBe(false)
    expect(insidePath('/a/b/c.json', '/a/b')).toBe(true)
    expect(insidePath('/a/bc/c.json', '/a/b')).toBe(false)
  })
})

describe('demo notice and badges', () => {
  it('the Models view explains the demo model and how to open a real one; the sidebar marks it', async () => {
    await start()
    const view = mount(ModelsView, { global: { plugins: [pinia] } })
    await flush()
    const notice = view.get('[data-testid="demo-notice"]')
    expect(notice.text()).toContain('built-in demo model')
    expect(notice.text()).toContain(DEMO_NOTE)
    expect(notice.text()).toContain('Hugging Face model folder')
    expect(notice.text()).toContain('/home/u/.cache/huggingface/hub')
    expect(notice.find('[data-testid="demo-open-folder"]').exists()).toBe(true)
    expect(view.find('[data-testid="use-demo-model"]').exists()).toBe(false)
    const side = mount(AppSidebar, { global: { plugins: [pinia] } })
    expect(side.get('[data-testid="demo-badge-models"]').text()).toBe('Demo')
    expect(side.get('[data-testid="nav-params"]').text()).toContain('Demo model preset')
    useParamsStore().set('supportRatio', 0.9)
    await nextTick()
    expect(side.get('[data-testid="nav-params"]').text()).toContain('Demo + 1 change')

    await useModelsStore().select(REAL)
    await flush()
    await nextTick()
    expect(view.find('[data-testid="demo-notice"]').exists()).toBe(false)
    expect(view.find('[data-testid="use-demo-model"]').exists()).toBe(true)
    expect(side.find('[data-testid="demo-badge-models"]').exists()).toBe(false)
    // The user's support_ratio stays; the rest is the notebook's again, which is exactly the "Lean to support" preset.
    expect(side.get('[data-testid="nav-params"]').text()).toContain('Lean to support preset')
  })
})
