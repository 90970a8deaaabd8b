// The notebook's model_response export (docs/architecture.md#comparison-export): each prompt with the original and
// the trained model's answer, then its metadata beside it (model, adapter, data, parameters, generation settings),
// then the token view of the answers (docs/insights.md).
import { join, resolve } from 'node:path'
import type { ModelSession } from '../../session/modelSession'
import { writeJsonAtomic } from '../../fsAtomic'
import { writeAnswerTokens } from '../../insights/answerTokens'
import type { TrainParams } from '../../../../src-shared/params/trainParams'
import { baseModelName } from '../adapterFiles'
import { COMPARISON_FILE, COMPARISON_META_FILE } from '../runFiles'
import type { ComparisonRow, NotebookRunRequest, ResponseRow } from '../../../../src-shared/run/runTypes'
import type { TrainResult } from './trainSummary'
import type { RunConfig } from './runInputs'

export interface ComparisonInput {
  session: ModelSession
  outDir: string
  req: NotebookRunRequest
  params: TrainParams
  config: RunConfig
  train: TrainResult
  engineVersion: string
  /** The adapter the run started from, when it was loaded. */
  initAdapterDir: string | undefined
  original: ResponseRow[]
  trained: ResponseRow[]
}

export async function writeComparison(c: ComparisonInput): Promise<void> {
  const { session, outDir, req, params, train, original, trained } = c
  const comparison: ComparisonRow[] = original.map((o, i) => ({
    id: o.id,
    prompt: o.prompt,
    response_from_original_model: o.response,
    response_from_trained_model: trained[i]!.response,
  }))
  writeJsonAtomic(join(outDir, COMPARISON_FILE), comparison)
  writeJsonAtomic(join(outDir, COMPARISON_META_FILE), {
    created: new Date().toISOString(),
    engine_version: c.engineVersion,
    model: { dir: resolve(req.modelDir), name: baseModelName(req.modelDir), ...(c.config.json.model as object) },
    adapter: train.adapterDir,
    init_adapter: c.initAdapterDir ?? (req.initAdapter ? resolve(req.initAdapter) : null),
    dataset: c.config.dataset,
    test_prompts: c.config.testPrompts,
    params,
    generation: {
      do_sample: false,
      max_new_tokens: params.maxNewTokens,
      eos_token_ids: [...session.tokenizer.eosIds],
      pad_token_id: session.tokenizer.padId,
      system_message: params.systemMessage,
    },
    training: { steps: train.steps, max_steps: train.maxSteps, train_loss: train.trainLoss, status: train.status },
    comparison: COMPARISON_FILE,
  })
  await writeAnswerTokens(
    session,
    outDir,
    original,
    trained,
    params,
    session.tokenizer.padId ?? session.tokenizer.eosId ?? 0,
  )
}
