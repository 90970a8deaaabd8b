// A model opened for work: the native model (weights on the engine's backend) plus its tokenizer and chat template.
// Checks the directory up front so a wrong path fails with a message naming the missing file, before any loading.
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { loadAddon } from '../../addon/loadAddon'
import type { BackendChoice, NativeModel, NativeModelInfo, QuantMode } from '../../addon/addonTypes'
import { StudioError, errorMessage } from '../errors'
import { statOrProblem } from '../pathProblems'
import { TextTokenizer } from '../tokenizer/textTokenizer'

export interface OpenModelOptions {
  quant: QuantMode
  backend: BackendChoice
  onProgress?: (fraction: number) => void
}

export interface ModelSession {
  dir: string
  native: NativeModel
  info: NativeModelInfo
  tokenizer: TextTokenizer
  dispose(): void
}

export function checkModelDir(dir: string): string {
  const abs = resolve(dir)
  const { stat, problem } = statOrProblem(abs)
  if (!stat) throw new StudioError('E_BAD_MODEL', `model directory ${abs} ${problem}`, { details: { dir: abs } })
  if (!stat.isDirectory())
    throw new StudioError(
      'E_BAD_MODEL',
      `${abs} is a file, not a model directory (choose the folder that holds config.json)`,
      { details: { dir: abs } },
    )
  if (!existsSync(join(abs, 'config.json')))
    throw new StudioError(
      'E_BAD_MODEL',
      `model directory ${abs} has no config.json (expected a Hugging Face model folder)`,
    )
  return abs
}

/** Converts an engine rejection (an Error with .code) into a StudioError with the same code. */
export function fromEngineError(e: unknown): StudioError {
  if (e instanceof StudioError) return e
  const code = (e as { code?: unknown })?.code
  return new StudioError(typeof code === 'string' ? code : 'E_INTERNAL', errorMessage(e), { cause: e })
}

export async function openModel(dir: string, options: OpenModelOptions): Promise<ModelSession> {
  const abs = checkModelDir(dir)
  const tokenizer = await TextTokenizer.fromDir(abs)
  let native: NativeModel
  try {
    native = await loadAddon().loadModel(abs, { quant: options.quant, backend: options.backend }, options.onProgress)
  } catch (e) {
    throw fromEngineError(e)
  }
  const info = native.info()
  if (tokenizer.vocabSize > info.config.vocab)
    throw new StudioError(
      'E_BAD_MODEL',
      `the tokenizer in ${abs} has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${info.config.vocab}`,
    )
  return { dir: abs, native, info, tokenizer, dispose: () => native.dispose() }
}
