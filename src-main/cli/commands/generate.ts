// `dpo-studio generate`: greedy answers to a prompts file, written as JSON [{id, prompt, response}].
import { loadPromptsFile } from '../../services/data/promptsFile'
import { contextCutNote } from '../../services/session/contextLimits'
import { generateResponses, planGeneration } from '../../services/session/generateResponses'
import { writeJsonAtomic } from '../../services/fsAtomic'
import { ProgressBar } from '../progressBar'
import { openForCli, type ModelFlags } from './openForCli'
import { templateStyle, type TemplateFlags } from './templateFlags'

export interface GenerateFlags extends ModelFlags, TemplateFlags {
  prompts: string
  system?: string
  template: boolean
  maxNewTokens: number
  batchSize: number
  out: string
}

export async function runGenerate(flags: GenerateFlags): Promise<void> {
  const prompts = await loadPromptsFile(flags.prompts)
  const style = templateStyle(flags)
  const session = await openForCli(flags)
  try {
    const plan = planGeneration(
      session,
      { prompts, maxNewTokens: flags.maxNewTokens, system: flags.system, noTemplate: !flags.template },
      '--max-new-tokens',
    )
    if (plan.cutByContext.length > 0)
      process.stderr.write(`note: ${contextCutNote(plan.cutByContext, prompts.length, plan.context!)}\n`)
    const bar = new ProgressBar('generate', prompts.length * flags.maxNewTokens, 'tokens (at most)')
    const responses = await generateResponses(session, {
      prompts,
      system: flags.system,
      noTemplate: !flags.template,
      ...style,
      maxNewTokens: flags.maxNewTokens,
      batchSize: flags.batchSize,
      onToken: (n) => bar.update(n),
    })
    bar.finish()
    writeJsonAtomic(
      flags.out,
      responses.map(({ id, prompt, response }) => ({ id, prompt, response })),
    )
    process.stderr.write(`wrote ${responses.length} responses to ${flags.out}\n`)
  } finally {
    session.dispose()
  }
}
