// The parts of the embedded demo that the renderer needs too (no Node imports): the parameters for the demo model
// and the plain-language note that says what it is. src-main/services/demo.ts adds the paths and re-exports these.
import type { TrainParamsInput } from '../params/trainParams'

/**
 * Parameters for the demo model. Its ~1.7M parameters move much less per step than a 7B model at the notebook's
 * learning rate, so the preset trains 4 epochs over all 60 pairs at 2e-3 (about 10 s on 2 cores); the answers then
 * clearly take the preferred side. Everything else keeps the notebook's defaults.
 */
export const DEMO_PRESET: TrainParamsInput = { dataSize: 60, epochs: 4, learningRate: 2e-3, maxNewTokens: 48 }

export const DEMO_NOTE =
  'This is the built-in demo model (about 1.7M parameters, trained by DPO Studio on its sample debate dataset). ' +
  'Open a real Hugging Face model folder (e.g. Breeze-7B-Instruct) or pick one from your local Hugging Face cache to ' +
  'train a real model.'
