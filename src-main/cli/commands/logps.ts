// `dpo-studio logps`: chosen/rejected log-prob sums per pair (TRL tokenization and masking), written as JSON.
import { loadPreferenceData, preferencePairs } from '../../services/data/preferenceFile'
import { scorePairs } from '../../services/session/scorePairs'
import { writeJsonAtomic } from '../../services/fsAtomic'
import { ProgressBar } from '../progressBar'
import { openForCli, type ModelFlags } from './openForCli'
import { templateStyle, type TemplateFlags } from './templateFlags'

export interface LogpsFlags extends ModelFlags, TemplateFlags {
  pairs: string
  system?: string
  template: boolean
  out: string
  perToken?: boolean
}

export async function runLogps(flags: LogpsFlags): Promise<void> {
  const data = await loadPreferenceData(flags.pairs)
  // HW6 rows become pairs with the notebook's default support_ratio; TRL rows are used as given.
  const pairs = preferencePairs(data)
  const style = templateStyle(flags)
  const session = await openForCli(flags)
  try {
    const bar = new ProgressBar('logps', pairs.length, 'pairs')
    const result = await scorePairs(session, {
      pairs,
      system: flags.system,
      noTemplate: !flags.template,
      ...style,
      onPair: (n) => bar.update(n),
      perToken: flags.perToken === true,
    })
    bar.finish()
    writeJsonAtomic(flags.out, result)
    process.stderr.write(`wrote ${result.length} results to ${flags.out}\n`)
  } finally {
    session.dispose()
  }
}
