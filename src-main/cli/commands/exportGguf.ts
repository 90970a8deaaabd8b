// `dpo-studio export-gguf`: a run's merged model as GGUF files (+ the LoRA adapter as GGUF, + an Ollama Modelfile).
import { StudioError } from '../../services/errors'
import { exportGguf } from '../../services/export/ggufExport'
import { GGUF_FILE_TYPES, type GgufFileType } from '../../../src-shared/params/enumValues'
import type { MergeBase } from '../../services/export/mergedWeights'
import { readRunConfig } from '../../services/export/runConfig'
import { ProgressBar } from '../progressBar'
import { mergeSource } from './exportMerged'

export interface ExportGgufFlags {
  model?: string
  adapter?: string
  out: string
  types: string
  lora: boolean
  base?: string | boolean
  mergeInto: 'auto' | MergeBase
  system?: string
  overwrite?: boolean
}

export function parseGgufTypes(list: string): GgufFileType[] {
  const types = list
    .split(',')
    .map((t) => t.trim().toUpperCase())
    .filter(Boolean)
  for (const t of types) {
    if (!(GGUF_FILE_TYPES as readonly string[]).includes(t))
      throw new StudioError('E_BAD_INPUT', `--types: unknown GGUF type '${t}' (use ${GGUF_FILE_TYPES.join(', ')})`)
  }
  return [...new Set(types)] as GgufFileType[]
}

/** The run's system message (config.json params), for the Modelfile's SYSTEM. */
export function runSystemMessage(runDir: string | undefined): string | undefined {
  return runDir ? readRunConfig(runDir).params.systemMessage : undefined
}

export async function runExportGguf(runDir: string | undefined, flags: ExportGgufFlags): Promise<void> {
  const src = mergeSource(runDir, flags)
  const bar = new ProgressBar('gguf', 100, '%')
  const system = flags.system ?? runSystemMessage(runDir)
  const r = await exportGguf({
    ...src,
    types: parseGgufTypes(flags.types),
    lora: flags.lora,
    ...(flags.base ? { baseType: flags.base === true ? ('F16' as const) : parseGgufTypes(flags.base)[0]! } : {}),
    outDir: flags.out,
    overwrite: flags.overwrite ?? false,
    ...(system !== undefined ? { systemMessage: system } : {}),
    onProgress: (f, note) => bar.update(Math.round(f * 100), note),
  })
  bar.finish()
  process.stderr.write(`wrote ${r.files.length} files to ${r.path}:\n${r.files.map((f) => `  ${f}`).join('\n')}\n`)
}
