// Run parameters, edited in the generated form (and the dataset view's data_size / support_ratio); validated by the
// one zod schema on every change, remembered between sessions.
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { TrainParams, TrainParamsInput } from '../../../src-main/services/params/trainParams'
import { buildParamFields, PRESETS, validateParams, type ParamKey } from '../lib/paramFields'

const STORAGE_KEY = 'dpo-studio.params'

function defaults(): Record<string, unknown> {
  return Object.fromEntries(buildParamFields().map((f) => [f.key, Array.isArray(f.default) ? [...f.default] : f.default]))
}

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
  const presetId = ref<string | null>(saved ? null : 'notebook')

  const validation = computed(() => validateParams(values.value as TrainParamsInput))
  const errors = computed<Partial<Record<ParamKey, string>>>(() => (validation.value.ok ? {} : validation.value.errors))
  const valid = computed(() => validation.value.ok)
  /** The resolved parameters (null while the form has errors). */
  const resolved = computed<TrainParams | null>(() => (validation.value.ok ? validation.value.value : null))
  const changed = computed(() => {
    const d = defaults()
    return fields.filter((f) => JSON.stringify(d[f.key]) !== JSON.stringify(values.value[f.key])).map((f) => f.key)
  })

  function set(key: ParamKey, value: unknown): void {
    values.value = { ...values.value, [key]: value }
    presetId.value = null
  }
  function applyPreset(id: string): void {
    const p = PRESETS.find((x) => x.id === id)
    if (!p) return
    values.value = { ...defaults(), ...p.values }
    presetId.value = id
  }
  function reset(): void {
    applyPreset('notebook')
  }

  watch(values, (v) => localStorage.setItem(STORAGE_KEY, JSON.stringify(v)), { deep: true })

  return { fields, values, presetId, errors, valid, resolved, changed, set, applyPreset, reset }
})
