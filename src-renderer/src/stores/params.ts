// Run parameters, edited in the generated form (and the dataset view's data_size / support_ratio); validated by the
// one zod schema on every change, remembered between sessions.
//
// The values follow the kind of model in use (tuneFor): the built-in demo model gets the Demo preset's values, a
// real model the notebook's. Switching converts only the fields the Demo preset sets, and only those still holding
// the other side's value, so whatever the user typed stays as it is.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { TrainParams, TrainParamsInput } from '@shared/params/trainParams'
import { buildParamFields, PRESETS, validateParams, type ParamKey } from '../lib/paramFields'

const STORAGE_KEY = 'dpo-studio.params'
/** Which kind of model the stored values are tuned for. */
const TUNED_KEY = 'dpo-studio.paramsFor'

export type ModelKind = 'demo' | 'real'

function defaults(): Record<string, unknown> {
  return Object.fromEntries(
    buildParamFields().map((f) => [f.key, Array.isArray(f.default) ? [...f.default] : f.default]),
  )
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)
const DEMO_VALUES = PRESETS.find((p) => p.id === 'demo')!.values as Record<string, unknown>

export const useParamsStore = defineStore('params', () => {
  const fields = buildParamFields()
  const saved = (() => {
    try {
      return JSON.parse(localStorage.getItem(STORAGE_KEY) ?? 'null') as Record<string, unknown> | null
    } catch {
      return null
    }
  })()
  const values = ref<Record<string, unknown>>({ ...defaults(), ...(saved ?? {}) })
  const tunedFor = ref<ModelKind>(saved && localStorage.getItem(TUNED_KEY) === 'demo' ? 'demo' : 'real')

  /** The preset the values are exactly equal to, if any (so an edit that lands back on one shows it again). */
  const presetId = computed<string | null>(() => {
    const d = defaults()
    return PRESETS.find((p) => fields.every((f) => same(values.value[f.key], { ...d, ...p.values }[f.key])))?.id ?? null
  })
  const preset = computed(() => PRESETS.find((p) => p.id === presetId.value) ?? null)
  const validation = computed(() => validateParams(values.value as TrainParamsInput))
  const errors = computed<Partial<Record<ParamKey, string>>>(() => (validation.value.ok ? {} : validation.value.errors))
  const valid = computed(() => validation.value.ok)
  /** The resolved parameters (null while the form has errors). */
  const resolved = computed<TrainParams | null>(() => (validation.value.ok ? validation.value.value : null))
  /** The fields in error, in form order, with their labels (for "Fix the parameter errors" and its links). */
  const invalidFields = computed(() =>
    fields
      .filter((f) => errors.value[f.key])
      .map((f) => ({ key: f.key, label: f.label, notebookName: f.notebookName })),
  )
  /** One sentence naming the fields in error ('' when there are none). */
  const errorSummary = computed(() =>
    invalidFields.value.length
      ? `Fix the parameter errors: ${invalidFields.value.map((f) => `${f.label} (${f.notebookName})`).join(', ')}.`
      : '',
  )
  /** Fields that differ from the notebook's defaults. */
  const changed = computed(() => {
    const d = defaults()
    return fields.filter((f) => !same(d[f.key], values.value[f.key])).map((f) => f.key)
  })

  /** Fields that differ from the starting point for the model in use (the Demo preset, or the notebook's defaults). */
  const changedFromStart = computed(() => {
    const start: Record<string, unknown> = { ...defaults(), ...(tunedFor.value === 'demo' ? DEMO_VALUES : {}) }
    return fields.filter((f) => !same(start[f.key], values.value[f.key])).map((f) => f.key)
  })

  function set(key: ParamKey, value: unknown): void {
    values.value = { ...values.value, [key]: value }
  }
  function applyPreset(id: string): void {
    const p = PRESETS.find((x) => x.id === id)
    if (!p) return
    values.value = { ...defaults(), ...p.values }
  }
  /** Back to the starting point for the model in use: the Demo preset for the demo model, else the notebook's. */
  function reset(): void {
    applyPreset(tunedFor.value === 'demo' ? 'demo' : 'notebook')
  }

  /**
   * The model in use changed kind. Demo: each field the Demo preset sets that still holds the notebook default takes
   * the preset's value. Real: each such field still holding the Demo preset's value goes back to the default. Fields
   * the user changed keep their values either way.
   */
  function tuneFor(kind: ModelKind): void {
    if (kind === tunedFor.value) return
    const d = defaults()
    const next = { ...values.value }
    for (const [key, demoValue] of Object.entries(DEMO_VALUES)) {
      const from = kind === 'demo' ? d[key] : demoValue
      const to = kind === 'demo' ? demoValue : d[key]
      if (same(next[key], from)) next[key] = Array.isArray(to) ? [...to] : to
    }
    values.value = next
    tunedFor.value = kind
  }

  watch(values, (v) => localStorage.setItem(STORAGE_KEY, JSON.stringify(v)), { deep: true })
  watch(tunedFor, (k) => localStorage.setItem(TUNED_KEY, k))

  return {
    fields,
    values,
    presetId,
    preset,
    tunedFor,
    errors,
    valid,
    resolved,
    invalidFields,
    errorSummary,
    changed,
    changedFromStart,
    set,
    applyPreset,
    reset,
    tuneFor,
  }
})
