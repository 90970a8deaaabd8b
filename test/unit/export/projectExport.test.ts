// Project export (docs/exports.md, "Project"), without Python: the folder holds the run's pairs with the ids our
// trainer uses, the step plan our schedule makes, requirements pinned as the reference suite's, accelerate configs for
// the chosen GPU count; a changed dataset or a GPU count that cannot share a step is refused. (The project itself runs
// in the reference suite, test/reference/exports.ref.test.ts.)
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadPreferenceData, preferencePairs } from '../../../src-main/services/data/preferenceFile'
import { exportProject } from '../../../src-main/services/export/projectExport'
import { resolveTrainParams } from '../../../src-shared/params/trainParams'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { sha256File } from '../../../src-main/services/training/modelFiles'
import { planSchedule } from '../../../src-main/services/training/schedule'
import { tokenizeTrainingPair } from '../../../src-main/services/training/tokenizePair'
import { tempDir } from '../../helpers/modelFixtures'
import { repoRoot, sharedPath } from '../../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')

function runDir(dataset: string, params: Record<string, unknown>): string {
  const dir = tempDir('dpo-run-')
  const file = path.join(dataset, 'labelled_data.json')
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      model_dir: STORIES,
      base_model: 'stories260K',
      dataset: { path: dataset, file, sha256: sha256File(file) },
      params: resolveTrainParams(params),
    }),
  )
  return dir
}

describe('project export', () => {
  it('writes the pairs with our ids, our step plan, pinned requirements and accelerate configs', async () => {
    const params = { dataSize: 20, gradAccum: 4, epochs: 2, quant: 'none' as const, optim: 'adamw' as const }
    const run = runDir(sharedPath('datasets/genai-hw6'), params)
    const out = path.join(tempDir('dpo-proj-'), 'project')
    const r = await exportProject({ runDir: run, outDir: out })
    expect(r).toMatchObject({ pairs: 20, steps: 10, microBatchesPerStep: 4, gpus: 4 })

    const rows = readFileSync(path.join(out, 'data/train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    const tok = await TextTokenizer.fromDir(STORIES)
    const p = resolveTrainParams(params)
    const pairs = preferencePairs(await loadPreferenceData(sharedPath('datasets/genai-hw6')), {
      dataSize: 20,
      supportRatio: p.supportRatio,
    })
    rows.forEach((row, i) => {
      const t = tokenizeTrainingPair(tok, pairs[i]!, p)
      expect([...row.prompt_ids, ...row.chosen_ids]).toEqual(t.chosen.ids)
      expect([...row.prompt_ids, ...row.rejected_ids]).toEqual(t.rejected.ids)
      expect(row.chosen).toBe(pairs[i]!.chosen)
      expect(row.prompt.startsWith('<s>')).toBe(true)
    })
    const plan = planSchedule({
      numPairs: 20,
      batchSize: 1,
      gradAccum: 4,
      epochs: 2,
      warmupRatio: p.warmupRatio,
      learningRate: p.learningRate,
      seed: 42,
    })
    expect(JSON.parse(readFileSync(path.join(out, 'data/steps.json'), 'utf8'))).toEqual(
      plan.plan.map((s) => s.microBatches.map((mb) => mb.pairs)),
    )
    const cfg = JSON.parse(readFileSync(path.join(out, 'run_config.json'), 'utf8'))
    expect(cfg).toMatchObject({
      optim: 'adamw_torch',
      schedule: { max_steps: 10, warmup_steps: 1 },
      model: { quant: 'none', dtype: 'float32' },
    })
    expect(readFileSync(path.join(out, 'accelerate/single_node.yaml'), 'utf8')).toMatch(/^num_processes: 4$/m)

    // Every pin of the project is the reference suite's (the versions its test runs the project with).
    const pins = (file: string) =>
      new Map(
        readFileSync(file, 'utf8')
          .split('\n')
          .filter((l) => /^[a-z].*==/.test(l))
          .map((l) => l.split('==') as [string, string]),
      )
    const refstack = pins(path.join(repoRoot, 'scripts/refstack/requirements.txt'))
    for (const [name, version] of pins(path.join(out, 'requirements.txt')))
      expect(`${name}==${version}`).toBe(`${name}==${refstack.get(name)}`)
    expect(readFileSync(path.join(out, 'README.md'), 'utf8')).toContain(
      'accelerate launch --config_file accelerate/single_node.yaml train.py',
    )

    // The project after a training on the cluster: exporting over it again must not delete what the training wrote.
    mkdirSync(path.join(out, 'outputs', 'adapter'), { recursive: true })
    writeFileSync(path.join(out, 'outputs', 'metrics.jsonl'), '{"step": 1}\n')
    await expect(exportProject({ runDir: run, outDir: out, overwrite: true })).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      message: expect.stringMatching(/also holds what it did not write \(outputs\)/),
    })
    expect(readFileSync(path.join(out, 'outputs', 'metrics.jsonl'), 'utf8')).toBe('{"step": 1}\n')
    rmSync(path.join(out, 'outputs'), { recursive: true })
    await expect(exportProject({ runDir: run, outDir: out })).rejects.toMatchObject({ code: 'E_EXPORT_EXISTS' })
    expect((await exportProject({ runDir: run, outDir: out, overwrite: true })).pairs).toBe(20)
  })

  it('refuses a dataset changed since the run, and a GPU count that cannot share a step', async () => {
    const copy = tempDir('dpo-data-')
    for (const f of ['labelled_data.json', 'test_prompt.json'])
      copyFileSync(sharedPath('datasets/genai-hw6', f), path.join(copy, f))
    const run = runDir(copy, { dataSize: 16, gradAccum: 4 })
    await expect(exportProject({ runDir: run, outDir: path.join(tempDir('dpo-proj-'), 'p'), gpus: 3 })).rejects.toThrow(
      /4 micro-batches each, which 3 GPUs cannot share/,
    )
    writeFileSync(
      path.join(copy, 'labelled_data.json'),
      readFileSync(path.join(copy, 'labelled_data.json'), 'utf8').replace('真人化', '動畫化'),
    )
    const target = path.join(tempDir('dpo-proj-'), 'p')
    await expect(exportProject({ runDir: run, outDir: target })).rejects.toThrow(/changed since the run/)
  })
})
