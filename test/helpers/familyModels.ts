// Tiny twins of the tested model families for TypeScript suites: `dpo-tool make-model --family NAME` writes the
// family's real config.json / generation_config.json (sizes shrunk), random weights and the family's real tokenizer
// from ../shared/tokenizers (native/testkit/family_fixtures.cpp). One folder per family and option set per process.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { tempDir } from './modelFixtures'
import { repoRoot, sharedPath } from './sharedPath'

export const FAMILIES = [
  'llama-3.2-1b-instruct',
  'llama-3.1-8b-instruct',
  'qwen2.5-0.5b-instruct',
  'qwen3-0.6b',
  'mistral-7b-instruct-v0.3',
  'breeze-7b-instruct-v1_0',
] as const
export type Family = (typeof FAMILIES)[number]

export const DPO_TOOL = path.join(repoRoot, 'build/native/dpo-tool')

export interface TwinOptions {
  bnb4bit?: boolean
  /** config.json fields to replace (null removes one). */
  config?: Record<string, unknown>
}

const made = new Map<string, string>()

/** The folder of a family's tiny twin (written on first use). */
export function familyModel(family: Family, options: TwinOptions = {}): string {
  const key = JSON.stringify([family, options])
  const cached = made.get(key)
  if (cached) return cached
  if (!existsSync(DPO_TOOL)) throw new Error(`${DPO_TOOL} is missing: run npm run build:native`)
  const dir = tempDir(`dpo-${family}-`)
  const args = ['make-model', '--family', family, '--out', dir, '--tokenizers', sharedPath('tokenizers')]
  if (options.bnb4bit) args.push('--bnb-4bit')
  if (options.config) args.push('--config', JSON.stringify(options.config))
  execFileSync(DPO_TOOL, args, { stdio: 'pipe' })
  made.set(key, dir)
  return dir
}
