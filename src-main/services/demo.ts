// The embedded demo: the project's own tiny model and sample dataset (resources/), used whenever the user has chosen
// no model or dataset, so the whole flow works out of the box in about a minute on any machine.
import path from 'node:path'
import { appRoot } from '../engine/loadNative'
import type { TrainParamsInput } from './params/trainParams'

export const DEMO_MODEL_DIR = path.join(appRoot(), 'resources', 'demo-model')
export const SAMPLE_DATASET_DIR = path.join(appRoot(), 'resources', 'sample-dataset', 'zh')
export const SAMPLE_TEST_PROMPTS = path.join(SAMPLE_DATASET_DIR, 'test_prompt.json')

/**
 * Parameters for the demo model. Its ~2M parameters move much less per step than a 7B model at the notebook's
 * learning rate, so the preset trains 4 epochs over all 60 pairs at 2e-3 (about 10 s on 2 cores); the answers then
 * clearly take the preferred side. Everything else keeps the notebook's defaults.
 */
export const DEMO_PRESET: TrainParamsInput = { dataSize: 60, epochs: 4, learningRate: 2e-3, maxNewTokens: 48 }

export function isDemoModel(dir: string): boolean {
  return path.resolve(dir) === path.resolve(DEMO_MODEL_DIR)
}

export const DEMO_NOTE =
  'This is the built-in demo model (about 2M parameters, trained by DPO Studio on its sample debate dataset). ' +
  'Open a real Hugging Face model folder (e.g. Breeze-7B-Instruct) or pick one from your local Hugging Face cache to ' +
  'train a real model.'
