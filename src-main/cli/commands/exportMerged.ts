// `dpo-studio export-merged`: a run's adapter (or any base + adapter) folded into a Hugging Face model folder.
import { StudioError } from '../../services/errors'
import { exportMergedModel, runModelAndAdapter } from '../../services/export/mergedModel'
import { FROM_NAME, type MergeBase } from '../../services/export/mergedWeights'
import { ProgressBar } from '../progressBar'

export interface ExportMergedFlags {
  model?: string
  adapter?: string
  out: string
  dtype?: 'float32' | 'bfloat16' | 'float16'
  mergeInto: 'auto' | MergeBase
  overwrite?: boolean
}

/** RUN_DIR, or --model + --adapter; the merge base defaults to the run's (nf4 for a 4-bit run). */
export function mergeSource(
  runDir: string | undefined,
  flags: { model?: string; adapter?: string; mergeInto: 'auto' | MergeBase },
) {
  if (runDir) {
    if (flags.model || flags.adapter)
      throw new StudioError('E_BAD_INPUT', 'give either RUN_DIR or --model/--adapter, not both')
    const r = runModelAndAdapter(runDir)
    return { ...r, runDir, mergeBase: flags.mergeInto === 'auto' ? r.mergeBase : flags.mergeInto }
  }
  if (!flags.model) throw new StudioError('E_BAD_INPUT', 'name a run directory (RUN_DIR) or --model (with --adapter)')
  return {
    modelDir: flags.model,
    adapterDir: flags.adapter ?? null,
    runDir: undefined,
    mergeBase: flags.mergeInto === 'auto' ? ('original' as const) : flags.mergeInto,
  }
}

export async function runExportMerged(runDir: string | undefined, flags: ExportMergedFlags): Promise<void> {
  const src = mergeSource(runDir, flags)
  const bar = new ProgressBar('merge', 100, '%')
  const r = await exportMergedModel({
    ...src,
    outDir: flags.out,
    overwrite: flags.overwrite ?? false,
    ...(flags.dtype ? { dtype: FROM_NAME[flags.dtype]! } : {}),
    onProgress: (f) => bar.update(Math.round(f * 100)),
  })
  bar.finish()
  process.stderr.write(
    `wrote a merged model (${r.mergedTensors} of ${r.tensors} tensors changed, ${r.dtype}, merged into the ${r.mergeBase} base) to ${r.path}\n`,
  )
}
