// `dpo-studio export-project` and `dpo-studio import-adapter`: a run as a TRL + accelerate project for a cluster, and
// the adapter it trains brought back for the before/after comparison (docs/exports.md).
import { exportProject } from '../../services/export/projectExport'
import { importAdapter } from '../../services/export/importAdapter'
import type { BackendChoice } from '../../../src-shared/params/enumValues'

export async function runExportProject(
  runDir: string,
  flags: { out: string; gpus?: number; overwrite?: boolean },
): Promise<void> {
  const r = await exportProject({
    runDir,
    outDir: flags.out,
    ...(flags.gpus ? { gpus: flags.gpus } : {}),
    overwrite: flags.overwrite ?? false,
  })
  process.stderr.write(
    `wrote a TRL + accelerate project to ${r.path}: ${r.pairs} pairs, ${r.steps} steps of ${r.microBatchesPerStep} micro-batches, ` +
      `accelerate/single_node.yaml for ${r.gpus} GPU(s); see its README.md\n`,
  )
}

export async function runImportAdapter(
  adapterDir: string,
  flags: { run: string; out: string; testPrompts?: string; backend?: BackendChoice; overwrite?: boolean },
): Promise<void> {
  const r = await importAdapter({
    adapterDir,
    runDir: flags.run,
    outDir: flags.out,
    ...(flags.testPrompts ? { testPromptsPath: flags.testPrompts } : {}),
    ...(flags.backend ? { backend: flags.backend } : {}),
    overwrite: flags.overwrite ?? false,
    onPhase: (phase, detail) => process.stderr.write(`${phase}${detail ? `: ${detail}` : ''}\n`),
  })
  process.stderr.write(
    `run directory: ${r.path} (${r.prompts} answers before and after${r.reusedOriginal ? ', originals from the run' : ''}${r.metrics ? ', metrics.jsonl from the project' : ''})\n`,
  )
}
