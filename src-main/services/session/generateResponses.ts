// Greedy answers for a list of prompts (the notebook's generation loop): template, tokenize, decode in batches on
// the engine, stream text deltas, and cut the answer out of the decoded text as the notebook does
// (docs/reference/generation.md#answer-text).
import type { NativeCancelToken } from '../../addon/addonTypes'
import type { RecordId } from '../data/promptsFile'
import { answerText } from '../tokenizer/answerText'
import { promptIds } from '../tokenizer/chatTemplate'
import type { StreamDecoder } from '../tokenizer/textTokenizer'
import type { ModelSession } from './modelSession'
import { fromEngineError } from './modelSession'
import { checkMaxNewTokens, checkPromptsFit, modelContext } from './contextLimits'
import { promptText, type PromptStyle } from './promptText'

export interface PromptInput {
  id: RecordId
  prompt: string
}

export interface GeneratedResponse {
  id: RecordId
  prompt: string
  response: string
  tokens: number
  finish: 'eos' | 'length' | 'context' | 'cancelled'
}

export interface GenerateRequest extends PromptStyle {
  prompts: PromptInput[]
  maxNewTokens: number
  /** Prompts decoded together; the answers are the same for any value (batch-invariant engine). */
  batchSize?: number
  /** index into prompts, and the new text since the last call for that prompt. */
  onText?: (index: number, delta: string) => void
  /** Called after each generated token with the running total. */
  onToken?: (generatedSoFar: number) => void
  cancel?: NativeCancelToken
}

export interface GenerationPlan {
  /** Each prompt's token ids (chat template applied). */
  ids: number[][]
  /** Prompts whose answers the model's context cuts before maxNewTokens. */
  cutByContext: number[]
  context: number | null
}

/**
 * Tokenizes the prompts and checks them against the model's context (contextLimits.ts): too many new tokens or a
 * prompt with no room for an answer fail here with E_TOO_LONG, before any generation.
 */
export function planGeneration(
  session: ModelSession,
  req: Pick<GenerateRequest, 'prompts' | 'maxNewTokens'> & PromptStyle,
  what?: string,
): GenerationPlan {
  const tok = session.tokenizer
  const context = modelContext(session.info.config.context)
  checkMaxNewTokens(req.maxNewTokens, context, what)
  const ids = req.prompts.map((p) => promptIds(tok, promptText(tok, p.prompt, req)))
  return { ids, cutByContext: checkPromptsFit(req.prompts, ids, req.maxNewTokens, context), context }
}

export async function generateResponses(session: ModelSession, req: GenerateRequest): Promise<GeneratedResponse[]> {
  const tok = session.tokenizer
  const { ids } = planGeneration(session, req)
  const eosIds = [...tok.eosIds]
  const batchSize = Math.max(1, req.batchSize ?? 16)
  const out: GeneratedResponse[] = []
  let generated = 0
  for (let start = 0; start < req.prompts.length; start += batchSize) {
    const batch = ids.slice(start, start + batchSize)
    const decoders: StreamDecoder[] = batch.map(() => tok.createStreamDecoder({ skipSpecialTokens: true }))
    const soFar: number[][] = batch.map(() => [])
    let result
    try {
      result = await session.native.generate(
        batch,
        { maxNewTokens: req.maxNewTokens, eosIds },
        (seq, token) => {
          soFar[seq]!.push(token)
          generated++
          req.onToken?.(generated)
          if (req.onText) {
            const delta = decoders[seq]!.next(soFar[seq]!)
            if (delta) req.onText(start + seq, delta)
          }
        },
        req.cancel,
      )
    } catch (e) {
      throw fromEngineError(e)
    }
    result.tokens.forEach((t, i) => {
      const p = req.prompts[start + i]!
      out.push({
        id: p.id,
        prompt: p.prompt,
        response: answerText(tok, batch[i]!, Array.from(t), { marker: req.noTemplate ? null : undefined }),
        tokens: t.length,
        finish: result.finish[i]!,
      })
    })
    if (result.finish.includes('cancelled')) break
  }
  return out
}
