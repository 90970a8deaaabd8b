// The run's first stage (docs/reference/dpo-data.md#truncation): every pair chat-templated with the run's system
// message and tokenized, with TRL's truncation and max_length never past the model's context (contextLimits.ts);
// the log says what was cut.
import type { PreferencePair } from '../../data/preferenceFile'
import { modelContext, trainingLengths, type TrainingLengths } from '../../session/contextLimits'
import type { ModelSession } from '../../session/modelSession'
import { StudioError, errorMessage } from '../../errors'
import type { TrainParams } from '../../../../src-shared/params/trainParams'
import { pairKey, swappedPairKey } from '../refCache'
import { tokenizeTrainingPair } from '../tokenizePair'
import type { RunEvents } from '../../../../src-shared/run/runTypes'
import type { TokenizedPair } from './trainRun'

export interface TokenizedPairs {
  tokenized: TokenizedPair[]
  lengths: TrainingLengths
  truncatedPairs: number
}

export function tokenizePairs(
  session: ModelSession,
  pairs: readonly PreferencePair[],
  params: TrainParams,
  ev: RunEvents,
): TokenizedPairs {
  const lengths = trainingLengths(params, modelContext(session.info.config.context))
  if (lengths.note) ev.log?.(lengths.note)
  let truncatedPairs = 0
  const tokenized: TokenizedPair[] = pairs.map((p, i) => {
    try {
      const t = tokenizeTrainingPair(session.tokenizer, p, { ...params, ...lengths })
      if (t.truncated) truncatedPairs++
      const chosen = { ids: Int32Array.from(t.chosen.ids), labels: Int32Array.from(t.chosen.labels) }
      const rejected = { ids: Int32Array.from(t.rejected.ids), labels: Int32Array.from(t.rejected.labels) }
      return { chosen, rejected, key: pairKey({ chosen, rejected }), swappedKey: swappedPairKey({ chosen, rejected }) }
    } catch (e) {
      throw new StudioError('E_BAD_INPUT', `pair ${i + 1} (id ${JSON.stringify(p.id)}): ${errorMessage(e)}`, {
        cause: e,
      })
    }
  })
  if (truncatedPairs > 0)
    ev.log?.(
      `${truncatedPairs} of ${pairs.length} pairs are longer than max_length ${lengths.maxLength}: truncated as TRL does (the prompt keeps its last ${lengths.maxPromptLength} tokens, answers are cut to fit)`,
    )
  return { tokenized, lengths, truncatedPairs }
}
