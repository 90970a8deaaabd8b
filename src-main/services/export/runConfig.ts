// A run directory's config.json (written by the training service: model_dir, params, dataset, test_prompts), as the
// exporters read it: one reader, one error for a folder that is not a run.
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { StudioError } from '../errors'
import { resolveTrainParams, type TrainParams } from '../../../src-shared/params/trainParams'

export interface RunConfigFile {
  model_dir: string
  base_model?: string
  dataset?: { path?: string; sha256?: string; file?: string } | null
  test_prompts?: { path?: string; sha256?: string } | null
  params: unknown
  [key: string]: unknown
}

export interface RunConfig {
  dir: string
  raw: RunConfigFile
  params: TrainParams
}

export function readRunConfig(runDir: string): RunConfig {
  const dir = resolve(runDir)
  let raw: RunConfigFile
  try {
    raw = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as RunConfigFile
  } catch {
    throw new StudioError('E_BAD_INPUT', `${dir} is not a run directory (no readable config.json)`)
  }
  if (typeof raw.model_dir !== 'string')
    throw new StudioError('E_BAD_INPUT', `${dir}/config.json does not name the model folder (model_dir)`)
  return { dir, raw, params: resolveTrainParams((raw.params ?? {}) as never) }
}
