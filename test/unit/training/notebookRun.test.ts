// The whole notebook run against a fake engine: run directory contents (config, responses, comparison and its
// metadata), phase order (original answers before the adapter exists, trained answers with it), and cancellation.
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { todayChatDate } from '../../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { runNotebook, type NotebookDeps } from '../../../src-main/services/training/notebookRun'
import type { RunPhase } from '../../../src-shared/run/runTypes'
import { tempDir } from '../../helpers/modelFixtures'
import { sharedPath } from '../../helpers/sharedPath'
import { FakeCancelToken, FakeModel, fakeSession } from './fakeEngine'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
let tok: TextTokenizer

beforeAll(async () => {
  tok = await TextTokenizer.fromDir(STORIES)
})

function deps(native: FakeModel, extra: Partial<NotebookDeps> = {}): NotebookDeps {
  return {
    openModel: async (dir) => fakeSession(dir, tok, native),
    engineVersion: 'test-engine',
    refCacheDir: null,
    cancelTokenFactory: () => new FakeCancelToken(),
    ...extra,
  }
}

const readJson = (...p: string[]) => JSON.parse(readFileSync(path.join(...p), 'utf8'))

/** A 16-pair run with the test prompts, cancelled as the trained answers start. */
function cancelDuringTrainedAnswers(out: string, native: FakeModel) {
  const controller = new AbortController()
  return runNotebook(
    {
      modelDir: STORIES,
      datasetPath: HW6,
      testPromptsPath: path.join(HW6, 'test_prompt.json'),
      params: resolveTrainParams({ dataSize: 16, maxNewTokens: 4 }),
      outDir: out,
    },
    { phase: (p) => p === 'trained' && controller.abort() },
    controller.signal,
    deps(native),
  )
}

describe('runNotebook', () => {
  it('fills the run directory in the notebook order', async () => {
    const out = tempDir('dpo-nb-')
    const native = new FakeModel()
    const phases: RunPhase[] = []
    const texts: string[] = []
    const summary = await runNotebook(
      {
        modelDir: STORIES,
        datasetPath: HW6,
        testPromptsPath: path.join(HW6, 'test_prompt.json'),
        params: resolveTrainParams({ maxNewTokens: 8 }),
        outDir: out,
      },
      { phase: (p) => phases.push(p), responseText: (which, i, d) => texts.push(`${which}:${i}:${d}`) },
      undefined,
      deps(native),
    )
    expect(summary).toMatchObject({
      status: 'completed',
      steps: 6,
      maxSteps: 6,
      outDir: out,
      adapterDir: path.join(out, 'adapter'),
    })
    expect(phases).toEqual(['load', 'original', 'reference', 'train', 'save', 'trained', 'done'])
    expect(readdirSync(out).sort()).toEqual([
      '.dpo-studio-run',
      'adapter',
      'comparison.json',
      'comparison_meta.json',
      'config.json',
      'metrics.jsonl',
      'pairs.jsonl',
      'pairs_tokens.jsonl',
      'responses_original.json',
      'responses_tokens.jsonl',
      'responses_trained.json',
      'run_status.json',
      'steps.jsonl',
      'train_summary.json',
    ])
    expect(readJson(out, 'run_status.json')).toMatchObject({
      status: 'completed',
      phase: 'done',
      pid: process.pid,
      error: null,
    })

    // Original answers come before any adapter exists, trained ones after training with it attached.
    const gens = native.callsOf('generate')
    expect(gens.map((g) => g.hasLora)).toEqual([false, true])
    const kinds = native.calls.map((c) => c.kind)
    expect(kinds.indexOf('generate')).toBeLessThan(kinds.indexOf('attachLora'))
    expect(kinds.lastIndexOf('generate')).toBeGreaterThan(kinds.lastIndexOf('optimizerStep'))
    expect(texts.some((t) => t.startsWith('original:0:'))).toBe(true)

    const config = readJson(out, 'config.json')
    const labelled = readFileSync(path.join(HW6, 'labelled_data.json'))
    expect(config).toMatchObject({
      engine_version: 'test-engine',
      model_dir: STORIES,
      base_model: 'stories260K',
      dataset: {
        path: HW6,
        format: 'hw6',
        rows: 50,
        pairs: 50,
        sha256: createHash('sha256').update(labelled).digest('hex'),
      },
      test_prompts: { prompts: 10 },
      init_adapter: null,
      model: { architecture: 'LlamaForCausalLM', backend: 'cpu', quant: 'nf4' },
    })
    // Every resolved parameter, with the day the run started as its chat-template date (docs/model-families.md).
    expect(config.params).toEqual({ ...resolveTrainParams({ maxNewTokens: 8 }), chatDate: todayChatDate() })
    expect(Date.parse(config.created)).toBeGreaterThan(0)

    const original = readJson(out, 'responses_original.json')
    const trained = readJson(out, 'responses_trained.json')
    const prompts = readJson(HW6, 'test_prompt.json')
    expect(original.map((r: { id: number }) => r.id)).toEqual(prompts.map((r: { id: number }) => r.id))
    expect(Object.keys(original[0]).sort()).toEqual(['id', 'prompt', 'response'])
    const comparison = readJson(out, 'comparison.json')
    expect(comparison).toHaveLength(10)
    expect(Object.keys(comparison[0])).toEqual([
      'id',
      'prompt',
      'response_from_original_model',
      'response_from_trained_model',
    ])
    comparison.forEach((row: Record<string, unknown>, i: number) => {
      expect(row.id).toBe(prompts[i].id)
      expect(row.prompt).toBe(prompts[i].prompt)
      expect(row.response_from_original_model).toBe(original[i].response)
      expect(row.response_from_trained_model).toBe(trained[i].response)
    })
    expect(comparison[0].response_from_original_model).not.toBe(comparison[0].response_from_trained_model)

    const meta = readJson(out, 'comparison_meta.json')
    expect(meta).toMatchObject({
      engine_version: 'test-engine',
      model: { dir: STORIES, name: 'stories260K' },
      adapter: path.join(out, 'adapter'),
      dataset: { sha256: config.dataset.sha256 },
      generation: { do_sample: false, max_new_tokens: 8, system_message: '回覆請少於20字' },
      training: { steps: 6, max_steps: 6, status: 'completed' },
    })
    expect(meta.params).toEqual(config.params)
  })

  it('trains only when there are no test prompts (dpo-studio train)', async () => {
    const out = tempDir('dpo-nb-')
    const native = new FakeModel()
    const summary = await runNotebook(
      { modelDir: STORIES, datasetPath: HW6, params: resolveTrainParams({ dataSize: 16 }), outDir: out },
      {},
      undefined,
      deps(native),
    )
    expect(summary).toMatchObject({ status: 'completed', steps: 2 })
    expect(native.callsOf('generate')).toHaveLength(0)
    expect(readdirSync(out).sort()).toEqual([
      '.dpo-studio-run',
      'adapter',
      'config.json',
      'metrics.jsonl',
      'pairs.jsonl',
      'pairs_tokens.jsonl',
      'run_status.json',
      'steps.jsonl',
      'train_summary.json',
    ])
  })

  it('fails on a bad dataset before opening the model, leaving no run files', async () => {
    const out = tempDir('dpo-nb-')
    let opened = false
    await expect(
      runNotebook(
        { modelDir: STORIES, datasetPath: path.join(HW6, 'nope.json'), params: resolveTrainParams(), outDir: out },
        {},
        undefined,
        {
          ...deps(new FakeModel()),
          openModel: async () => {
            opened = true
            throw new Error('should not open')
          },
        },
      ),
    ).rejects.toMatchObject({ code: 'E_BAD_INPUT' })
    expect(opened).toBe(false)
    expect(readdirSync(out)).toEqual([])
  })

  it('cancelled while generating the trained answers: training results stay, no comparison is written', async () => {
    const out = tempDir('dpo-nb-')
    const summary = await cancelDuringTrainedAnswers(out, new FakeModel())
    expect(summary).toMatchObject({
      status: 'cancelled',
      cancelledIn: 'trained',
      steps: 2,
      adapterDir: path.join(out, 'adapter'),
    })
    expect(existsSync(path.join(out, 'responses_original.json'))).toBe(true)
    expect(existsSync(path.join(out, 'responses_trained.json'))).toBe(false)
    expect(existsSync(path.join(out, 'comparison.json'))).toBe(false)
    // Training finished, but the run did not: no summary may read as a completed run (issue 10 item 9).
    expect(readJson(out, 'train_summary.json')).toMatchObject({
      status: 'cancelled',
      training_status: 'completed',
      cancelled_in: 'trained',
    })
    expect(readJson(out, 'run_status.json')).toMatchObject({
      status: 'cancelled',
      cancelledIn: 'trained',
      reason: 'cancelled during trained responses',
    })
  })

  it("a cancel that reaches the engine before a batch's first token (E_CANCELLED) is a cancel, not a failure", async () => {
    // The real engine checks its token before the prefill and throws E_CANCELLED there.
    class CancelsBeforePrefill extends FakeModel {
      override async generate(...args: Parameters<FakeModel['generate']>) {
        if (args[3]?.cancelled) throw Object.assign(new Error('cancelled'), { code: 'E_CANCELLED' })
        return super.generate(...args)
      }
    }
    const out = tempDir('dpo-nb-')
    const summary = await cancelDuringTrainedAnswers(out, new CancelsBeforePrefill())
    expect(summary).toMatchObject({ status: 'cancelled', cancelledIn: 'trained' })
    expect(readJson(out, 'run_status.json')).toMatchObject({ status: 'cancelled', cancelledIn: 'trained' })
  })

  it('cancelled during training: reports the training phase and the step reached', async () => {
    const out = tempDir('dpo-nb-')
    const controller = new AbortController()
    const summary = await runNotebook(
      {
        modelDir: STORIES,
        datasetPath: HW6,
        testPromptsPath: path.join(HW6, 'test_prompt.json'),
        params: resolveTrainParams({ maxNewTokens: 4 }),
        outDir: out,
      },
      { metrics: (row) => row.step === 2 && controller.abort() },
      controller.signal,
      deps(new FakeModel()),
    )
    expect(summary).toMatchObject({ status: 'cancelled', cancelledIn: 'train', steps: 2, maxSteps: 6 })
    expect(readJson(out, 'train_summary.json')).toMatchObject({ status: 'cancelled', cancelled_at_step: 2 })
    expect(existsSync(path.join(out, 'responses_trained.json'))).toBe(false)
  })

  it('a new run in the folder of a finished one removes its insights files first (docs/run-directory.md)', async () => {
    const out = tempDir('dpo-nb-')
    const req = {
      modelDir: STORIES,
      datasetPath: HW6,
      testPromptsPath: path.join(HW6, 'test_prompt.json'),
      params: resolveTrainParams({ maxNewTokens: 4 }),
      outDir: out,
    }
    await runNotebook(req, {}, undefined, deps(new FakeModel()))
    const insights = ['pairs.jsonl', 'pairs_tokens.jsonl', 'responses_tokens.jsonl']
    expect(readdirSync(out)).toEqual(expect.arrayContaining(insights))
    // Stopped during training: nothing of the finished run may read as this run's.
    const controller = new AbortController()
    const summary = await runNotebook(
      req,
      { metrics: (row) => row.step === 1 && controller.abort() },
      controller.signal,
      deps(new FakeModel()),
    )
    expect(summary).toMatchObject({ status: 'cancelled', cancelledIn: 'train' })
    for (const f of insights) expect(existsSync(path.join(out, f)), f).toBe(false)
  })
})
