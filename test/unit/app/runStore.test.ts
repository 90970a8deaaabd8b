// Run directories as the history and export read them: listing, a torn metrics line, status fallbacks, the
// notebook-shaped comparison export with its metadata, and adapter export that never leaves half a folder.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  exportAdapter,
  exportComparison,
  listRuns,
  openRun,
  readExport,
  readMetrics,
  writeRunStatus,
} from '../../../src-main/api/runStore'
import { sharedPath } from '../../helpers/sharedPath'

function makeRun(
  runsDir: string,
  id: string,
  opts: { comparison?: boolean; adapter?: boolean; status?: 'completed' | 'failed' } = {},
): string {
  const dir = path.join(runsDir, id)
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({
      model_dir: '/m/breeze',
      dataset: { path: '/d/hw6' },
      params: { maxNewTokens: 200, systemMessage: '回覆請少於20字' },
    }),
  )
  const row = (step: number, loss: number) =>
    JSON.stringify({ step, epoch: step / 10, loss, 'rewards/margins': step / 100 })
  writeFileSync(path.join(dir, 'metrics.jsonl'), `${row(1, 0.6931)}\n${row(2, 0.65)}\n{"step": 3, "lo`)
  if (opts.status)
    writeRunStatus(dir, {
      runId: id,
      status: opts.status,
      startedAt: '2024-05-01T10:00:00.000Z',
      endedAt: '2024-05-01T10:05:00.000Z',
      modelDir: '/m/breeze',
      datasetPath: '/d/hw6',
      testPromptsPath: null,
      engineVersion: '0.1.0',
      error: opts.status === 'failed' ? 'The engine process was killed (SIGKILL)' : null,
    })
  const rows = [{ id: 1, prompt: '真人化？', response: '好' }]
  writeFileSync(path.join(dir, 'responses_original.json'), JSON.stringify(rows))
  writeFileSync(path.join(dir, 'responses_trained.json'), JSON.stringify([{ ...rows[0], response: '很好' }]))
  if (opts.comparison)
    writeFileSync(
      path.join(dir, 'comparison.json'),
      JSON.stringify([
        { id: 1, prompt: '真人化？', response_from_original_model: '好', response_from_trained_model: '很好' },
      ]),
    )
  if (opts.adapter) {
    mkdirSync(path.join(dir, 'adapter'))
    writeFileSync(path.join(dir, 'adapter', 'adapter_config.json'), '{"r": 64}')
    writeFileSync(path.join(dir, 'adapter', 'adapter_model.safetensors'), 'weights')
  }
  return dir
}

describe('run store', () => {
  it('reads metrics, skipping a torn last line', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    const dir = makeRun(runs, 'r1')
    expect((await readMetrics(dir)).map((m) => m.step)).toEqual([1, 2])
  })

  it('lists runs newest first with status, model, dataset, steps and final loss', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    makeRun(runs, 'old', { status: 'failed' })
    makeRun(runs, 'cli-run', { comparison: true })
    mkdirSync(path.join(runs, 'not-a-run'))
    const list = await listRuns(runs)
    expect(list.map((r) => r.runId).sort()).toEqual(['cli-run', 'old'])
    const old = list.find((r) => r.runId === 'old')!
    expect(old).toMatchObject({
      status: 'failed',
      modelDir: '/m/breeze',
      datasetPath: '/d/hw6',
      steps: 2,
      finalLoss: 0.65,
    })
    expect(old.error).toMatch(/SIGKILL/)
    // A run made by the CLI has no run_status.json: its comparison says it completed.
    expect(list.find((r) => r.runId === 'cli-run')!.status).toBe('completed')
    await expect(openRun(path.join(runs, 'not-a-run'))).rejects.toThrow(/not a run directory/)
  })

  it('says where a cancelled run stopped, and marks a run whose process is gone as failed', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    const base = {
      startedAt: '2024-05-01T10:00:00.000Z',
      endedAt: null,
      modelDir: '/m',
      datasetPath: '/d',
      testPromptsPath: null,
      engineVersion: '0.1.0',
      error: null,
    }
    writeRunStatus(makeRun(runs, 'c1'), {
      ...base,
      runId: 'c1',
      status: 'cancelled',
      cancelledIn: 'trained',
      reason: 'cancelled during trained responses',
    })
    // pid 4194305 is not a process on this machine: the run cannot still be running.
    writeRunStatus(makeRun(runs, 'o1'), {
      ...base,
      runId: 'o1',
      status: 'running',
      pid: 4194305,
      hostname: hostname(),
      phase: 'train',
    })
    const list = await listRuns(runs)
    expect(list.find((r) => r.runId === 'c1')).toMatchObject({
      status: 'cancelled',
      reason: 'cancelled during trained responses',
      error: null,
    })
    const orphan = list.find((r) => r.runId === 'o1')!
    expect(orphan.status).toBe('failed')
    expect(orphan.error).toMatch(/^stopped during training: the process that ran it \(pid 4194305\) is gone/)
    expect(JSON.parse(readFileSync(path.join(runs, 'o1', 'run_status.json'), 'utf8')).status).toBe('failed')
  })

  it('exports the comparison in the notebook shape with metadata beside it', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    const dir = makeRun(runs, 'r2', { status: 'completed' })
    const target = path.join(runs, 'out', 'cmp.json')
    const r = await exportComparison(dir, target, '0.1.0')
    const rows = JSON.parse(readFileSync(target, 'utf8')) as unknown[]
    expect(rows).toEqual([
      { id: 1, prompt: '真人化？', response_from_original_model: '好', response_from_trained_model: '很好' },
    ])
    const meta = JSON.parse(readFileSync(r.metadataPath!, 'utf8')) as Record<string, unknown>
    expect(meta).toMatchObject({
      model: '/m/breeze',
      engine_version: '0.1.0',
      generation: { do_sample: false, max_new_tokens: 200 },
      exported: { run: 'r2' },
    })
  })

  it('never exports over a file that is not an earlier export; over an earlier one only when told to', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    const dir = makeRun(runs, 'r5', { status: 'completed' })
    // A dataset (the real HW6 file) where the user pointed the export by mistake: refused, byte for byte intact.
    const dataset = path.join(runs, 'labelled_data.json')
    copyFileSync(sharedPath('datasets/genai-hw6/labelled_data.json'), dataset)
    const original = readFileSync(dataset)
    await expect(exportComparison(dir, dataset, '0.1.0')).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
      details: { earlierExport: false },
    })
    await expect(exportComparison(dir, dataset, '0.1.0', true)).rejects.toMatchObject({ code: 'E_EXPORT_NOT_OURS' })
    expect(readFileSync(dataset).equals(original)).toBe(true)
    expect(existsSync(path.join(runs, 'labelled_data.meta.json'))).toBe(false)
    // A folder, and a file whose .meta.json is someone else's, are refused too.
    await expect(exportComparison(dir, runs, '0.1.0', true)).rejects.toThrow(/is a folder/)
    writeFileSync(path.join(runs, 'notes.meta.json'), '{"mine": 1}')
    await expect(exportComparison(dir, path.join(runs, 'notes.json'), '0.1.0', true)).rejects.toMatchObject({
      code: 'E_EXPORT_NOT_OURS',
    })
    expect(readFileSync(path.join(runs, 'notes.meta.json'), 'utf8')).toBe('{"mine": 1}')

    const target = path.join(runs, 'cmp.json')
    await exportComparison(dir, target, '0.1.0')
    await expect(exportComparison(dir, target, '0.1.0')).rejects.toMatchObject({
      code: 'E_EXPORT_EXISTS',
      details: { earlierExport: true, path: target },
    })
    const again = await exportComparison(dir, target, '0.1.0', true)
    expect(again.path).toBe(target)
  })

  it('copies the adapter, refusing a non-empty unrelated folder', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-rs-'))
    const dir = makeRun(runs, 'r3', { adapter: true })
    const target = path.join(runs, 'exported-adapter')
    const r = await exportAdapter(dir, target)
    expect(r.files.map((f) => path.basename(f)).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors'])
    expect(existsSync(path.join(target, 'adapter_model.safetensors'))).toBe(true)
    await exportAdapter(dir, target) // an earlier adapter export may be overwritten
    const busy = path.join(runs, 'busy')
    mkdirSync(busy)
    writeFileSync(path.join(busy, 'thesis.tex'), 'x')
    await expect(exportAdapter(dir, busy)).rejects.toThrow(/not empty/)
    await expect(exportAdapter(makeRun(runs, 'r4'), path.join(runs, 'a4'))).rejects.toThrow(/no adapter/)
  })
})

describe('run list parameters and export download', () => {
  it("lists each run with config.json's params (null without them)", async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'dpo-runs-'))
    makeRun(runs, 'r1', { status: 'completed' })
    mkdirSync(path.join(runs, 'bare'))
    writeRunStatus(path.join(runs, 'bare'), {
      runId: 'bare',
      status: 'failed',
      startedAt: '2024-05-02T10:00:00.000Z',
      endedAt: null,
      modelDir: '/m',
      datasetPath: '/d',
      testPromptsPath: null,
      engineVersion: null,
      error: 'x',
    })
    const list = await listRuns(runs)
    expect(list.find((r) => r.runId === 'r1')!.params).toEqual({ maxNewTokens: 200, systemMessage: '回覆請少於20字' })
    expect(list.find((r) => r.runId === 'bare')!.params).toBe(null)
  })

  it('readExport gives an exported JSON file whole, and refuses anything else', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'dpo-read-'))
    const file = path.join(dir, 'comparison.json')
    writeFileSync(file, '[{"id": 1}]\n')
    expect(await readExport(file)).toEqual({ name: 'comparison.json', text: '[{"id": 1}]\n' })
    writeFileSync(path.join(dir, 'notes.txt'), 'x')
    await expect(readExport(path.join(dir, 'notes.txt'))).rejects.toThrow(/only exported \.json files/)
    await expect(readExport(path.join(dir, 'missing.json'))).rejects.toThrow(/is not a file/)
  })
})
