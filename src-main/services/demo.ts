// The embedded demo: the project's own tiny model and sample dataset (resources/), used whenever the user has chosen
// no model or dataset, so the whole flow works out of the box in about a minute on any machine.
import { existsSync, realpathSync } from 'node:fs'
import path from 'node:path'
import type { DemoInfo } from '../../src-shared/api/contract'
import { appRoot } from '../addon/loadAddon'
import { DEMO_NOTE, DEMO_PRESET } from '../../src-shared/demo/demoPreset'

export { DEMO_NOTE, DEMO_PRESET }

export const DEMO_MODEL_DIR = path.join(appRoot(), 'resources', 'demo-model')
export const SAMPLE_DATASET_DIR = path.join(appRoot(), 'resources', 'sample-dataset', 'zh')
export const SAMPLE_TEST_PROMPTS = path.join(SAMPLE_DATASET_DIR, 'test_prompt.json')

const real = (p: string): string => {
  try {
    return realpathSync.native(p)
  } catch {
    return p
  }
}

export function isDemoModel(dir: string): boolean {
  return real(path.resolve(dir)) === real(path.resolve(DEMO_MODEL_DIR))
}

/**
 * What the app needs to start on the demo (appInfo.demo): real paths, so they compare equal to what the path policy
 * hands back; null when this build has no demo model or sample dataset.
 */
export function demoInfo(): DemoInfo | null {
  if (
    !existsSync(path.join(DEMO_MODEL_DIR, 'config.json')) ||
    !existsSync(path.join(SAMPLE_DATASET_DIR, 'labelled_data.json'))
  )
    return null
  const datasetDir = real(SAMPLE_DATASET_DIR)
  return {
    modelDir: real(DEMO_MODEL_DIR),
    datasetDir,
    testPromptsPath: existsSync(SAMPLE_TEST_PROMPTS) ? real(SAMPLE_TEST_PROMPTS) : null,
    note: DEMO_NOTE,
  }
}
