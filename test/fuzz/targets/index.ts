// Every TypeScript fuzz target, in the order `npm run fuzz` runs them (docs/fuzzing.md).
import type { JsFuzzTarget } from '../jsTarget'
import { adapterConfig, adapterWeights } from './adapter'
import { resumeCheckpoint } from './checkpoint'
import { preferenceDataset, promptsDataset } from './datasets'
import { modelConfigInspect, modelSafetensorsInspect } from './modelInspect'
import { tokenizerConfig } from './tokenizerConfig'

export const JS_TARGETS: readonly JsFuzzTarget[] = [
  preferenceDataset,
  promptsDataset,
  adapterConfig,
  adapterWeights,
  tokenizerConfig,
  modelConfigInspect,
  modelSafetensorsInspect,
  resumeCheckpoint,
]

export function jsTarget(name: string): JsFuzzTarget {
  const t = JS_TARGETS.find((x) => x.name === name)
  if (!t) throw new Error(`no fuzz target ${name}`)
  return t
}
