// `dpo-studio sweep --support-ratio 0,0.25,0.5,0.75,1 [run flags] --out DIR`: one notebook run per ratio into
// DIR/ratio-<r>/, sharing the loaded model and the reference cache, and DIR/sweep.json with the mean margin toward
// support and the test answers' stance per ratio (docs/insights.md). Defaults as `run` (the demo when nothing is
// chosen). Ctrl-C or SIGTERM stops after the current micro-batch; sweep.json keeps the runs that finished (exit 130 /
// 143). DIR follows the rules of run directories (docs/run-directory.md "Sweep folders").
import { join } from 'node:path'
import { StudioError } from '../../services/errors'
import { SWEEP_FILE } from '../../../src-shared/insights/insightTypes'
import { runSweep } from '../../services/insights/sweep'
import { withDemoDefaults, type RunFlags } from './run'
import { CliExit, CliRunView, RUN_PARAM_FLAGS, TRAIN_PARAM_FLAGS, paramsFromFlags, stopOnSignals } from './trainFlags'

/** Every run flag but --support-ratio, which the sweep takes as a list. */
export const SWEEP_PARAM_FLAGS = [...TRAIN_PARAM_FLAGS, ...RUN_PARAM_FLAGS].filter((f) => f.key !== 'supportRatio')

/** "0,0.25,1" -> [0, 0.25, 1]; one line naming the flag otherwise. */
export function parseRatios(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim())
  return parts.map((p) => {
    const v = p === '' ? NaN : Number(p)
    if (!Number.isFinite(v) || v < 0 || v > 1)
      throw new StudioError('E_BAD_ARGS', `--support-ratio entries must each be a number between 0 and 1, got '${p}'`)
    return v
  })
}

export async function runSweepCommand(flags: RunFlags & { supportRatio?: string }): Promise<void> {
  if (flags.out === undefined) throw new StudioError('E_BAD_ARGS', "required option '--out <dir>' not specified")
  const ratios = parseRatios(flags.supportRatio ?? '0,0.25,0.5,0.75,1')
  const resolved = withDemoDefaults(flags)
  const params = paramsFromFlags(resolved, SWEEP_PARAM_FLAGS)
  const stop = stopOnSignals()
  const view = new CliRunView()
  try {
    const sweep = await runSweep(
      {
        modelDir: resolved.model!,
        datasetPath: resolved.dataset!,
        testPromptsPath: resolved.testPrompts,
        params,
        ratios,
        outDir: flags.out,
      },
      {
        ...view.events,
        sweep: (p) => {
          if (!p.row) return
          view.close()
          const r = p.row
          const stance = r.stance ? `, test answers ${r.stance.support} support / ${r.stance.oppose} oppose` : ''
          const margin = r.mean_margin_support === null ? 'n/a' : r.mean_margin_support.toFixed(4)
          process.stderr.write(
            `sweep: support_ratio ${r.support_ratio}: mean margin toward support ${margin}${stance}\n`,
          )
        },
      },
      stop.signal,
      { onLoadProgress: (f) => view.loadProgress(f) },
    )
    view.close()
    if (sweep.status === 'cancelled')
      throw new CliExit(
        stop.exitCode(),
        `sweep cancelled; ${join(flags.out, SWEEP_FILE)} keeps the ${sweep.runs.length - 1} finished run(s)`,
      )
    process.stderr.write(`sweep of ${sweep.runs.length} runs: ${join(flags.out, SWEEP_FILE)}\n`)
  } finally {
    view.close()
    stop.dispose()
  }
}
