// A preference pair as training sees it (docs/reference/dpo-data.md#tokenizing-a-row): the prompt chat-templated with
// the run's system message, then TRL 0.9's tokenize_row with the run's length limits. One function, so the trainer and
// the benchmark workload (scripts/bench/makeWorkload.ts) tokenize identically.
import type { PreferencePair } from '../data/preferenceFile'
import { promptStyleOf, promptText } from '../session/promptText'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import { dpoTokenize, type DpoTokenizedPair } from '../tokenizer/dpoTokenize'
import type { TextTokenizer } from '../tokenizer/textTokenizer'

export type PairTokenParams = Pick<
  TrainParams,
  'systemMessage' | 'maxLength' | 'maxPromptLength' | 'enableThinking' | 'chatDate'
>

export function tokenizeTrainingPair(
  tok: TextTokenizer,
  pair: PreferencePair,
  params: PairTokenParams,
): DpoTokenizedPair {
  return dpoTokenize(tok, promptText(tok, pair.prompt, promptStyleOf(params)), pair.chosen, pair.rejected, {
    maxLength: params.maxLength,
    maxPromptLength: params.maxPromptLength,
  })
}
