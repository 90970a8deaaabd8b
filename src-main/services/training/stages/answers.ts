// The notebook's two generation phases (docs/reference/generation.md#before-and-after-training): greedy answers to
// the test prompts before training (no adapter attached yet; docs/reference/precision.md#generation-before-training)
// and after it, streamed to the windows and written to the run directory as each phase completes.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { NativeCancelToken } from '../../../addon/addonTypes'
import type { PromptRow } from '../../data/promptsFile'
import { contextCutNote } from '../../session/contextLimits'
import { generateResponses, planGeneration } from '../../session/generateResponses'
import type { ModelSession } from '../../session/modelSession'
import type { PromptStyle } from '../../session/promptText'
import { writeJsonAtomic } from '../../fsAtomic'
import { RESPONSES_ORIGINAL_FILE, RESPONSES_TRAINED_FILE } from '../runFiles'
import type { ResponseRow, RunEvents } from '../../../../src-shared/run/runTypes'

export interface AnswerRun {
  session: ModelSession
  outDir: string
  prompts: PromptRow[]
  maxNewTokens: number
  /** One prompt style (system message, template date, enable_thinking) for the context check and both generations. */
  style: PromptStyle
  events: RunEvents
  signal: AbortSignal | undefined
}

/** The test prompts must fit the model's context now, not after minutes of training (contextLimits.ts). */
export function checkPromptsFit(a: AnswerRun): void {
  const plan = planGeneration(
    a.session,
    { prompts: a.prompts, maxNewTokens: a.maxNewTokens, ...a.style },
    'max new tokens',
  )
  if (plan.cutByContext.length > 0) a.events.log?.(contextCutNote(plan.cutByContext, a.prompts.length, plan.context!))
}

/** The original answers a resumed run already has. */
export function readOriginalAnswers(outDir: string): ResponseRow[] {
  return JSON.parse(readFileSync(join(outDir, RESPONSES_ORIGINAL_FILE), 'utf8')) as ResponseRow[]
}

/** Writes original answers made earlier on the same base model and inputs (a sweep's first run), as if generated. */
export function reuseOriginalAnswers(a: AnswerRun, rows: ResponseRow[]): void {
  a.events.log?.(`original answers: the ones this sweep generated for its first run (${a.prompts.length} prompts)`)
  rows.forEach((r, i) => a.events.response?.('original', i, r))
  writeJsonAtomic(join(a.outDir, RESPONSES_ORIGINAL_FILE), rows)
}

/** Generates and writes one phase's answers; null (nothing written) when the run was cancelled meanwhile. */
export async function answerPhase(
  a: AnswerRun,
  which: 'original' | 'trained',
  cancel: NativeCancelToken | undefined,
): Promise<ResponseRow[] | null> {
  const rows = await generate(a, which, cancel)
  if (rows === null || a.signal?.aborted) return null
  writeJsonAtomic(join(a.outDir, which === 'original' ? RESPONSES_ORIGINAL_FILE : RESPONSES_TRAINED_FILE), rows)
  return rows
}

/** Greedy answers for the prompts, streamed to events; null when cancelled before every answer was complete. */
async function generate(
  a: AnswerRun,
  which: 'original' | 'trained',
  cancel: NativeCancelToken | undefined,
): Promise<ResponseRow[] | null> {
  let out
  try {
    out = await generateResponses(a.session, {
      prompts: a.prompts,
      ...a.style,
      maxNewTokens: a.maxNewTokens,
      onText: (i, delta) => a.events.responseText?.(which, i, delta),
      ...(cancel ? { cancel } : {}),
    })
  } catch (e) {
    // A cancel that lands before a batch's first token is an E_CANCELLED error, not a 'cancelled' finish: same stop.
    if ((e as { code?: unknown })?.code === 'E_CANCELLED') return null
    throw e
  }
  if (out.length < a.prompts.length || out.some((r) => r.finish === 'cancelled')) return null
  const rows = out.map(({ id, prompt, response }) => ({ id, prompt, response }))
  rows.forEach((r, i) => a.events.response?.(which, i, r))
  return rows
}
