// Run directories on the real CLI and engine (demo model): --out never writes into a model or other foreign folder,
// two runs cannot share one folder (lock with stale-lock takeover), and SIGTERM / Ctrl-C stop cleanly and record in
// which phase (docs/run-directory.md; issue 10 items 1, 2, 9). The same for `sweep --out` (its sweep folders).
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { lastErrorLine, runCli, startCli } from '../helpers/runCli'
import { repoRoot } from '../helpers/sharedPath'

const DEMO = path.join(repoRoot, 'resources/demo-model')
/** A short demo run: 16 pairs, 2 epochs, 2 pairs per step = 16 steps. */
const SHORT = ['--data-size', '16', '--epochs', '2', '--grad-accum', '2', '--max-new-tokens', '8']

function hashes(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [
        f,
        createHash('sha256')
          .update(readFileSync(path.join(dir, f)))
          .digest('hex'),
      ]),
  )
}
const readJson = (...p: string[]) => JSON.parse(readFileSync(path.join(...p), 'utf8'))
const jsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))

describe('run --out ownership', () => {
  it('refuses to write into a model folder (--out = --model), and the model stays byte for byte', () => {
    const model = tempDir('dpo-model-')
    cpSync(DEMO, model, { recursive: true })
    const before = hashes(model)
    const r = runCli(['run', '--model', model, '--out', model, ...SHORT])
    expect(r.code).toBe(1)
    expect(lastErrorLine(r)).toMatch(/E_NOT_RUN_DIR.*is inside the model folder/)
    expect(hashes(model)).toEqual(before)

    const inside = runCli(['run', '--model', model, '--out', path.join(model, 'runs', 'a'), ...SHORT])
    expect(inside.code).toBe(1)
    expect(lastErrorLine(inside)).toMatch(/inside the model folder/)
    expect(hashes(model)).toEqual(before)
  })

  it('refuses any other non-empty folder that is not a run directory (another model, a dataset folder)', () => {
    const other = tempDir('dpo-other-')
    cpSync(DEMO, other, { recursive: true })
    const before = hashes(other)
    const r = runCli(['run', '--out', other, ...SHORT])
    expect(r.code).toBe(1)
    expect(lastErrorLine(r)).toMatch(
      /E_NOT_RUN_DIR.*is not empty and is not a DPO Studio run directory \(it holds a model\)/,
    )
    expect(hashes(other)).toEqual(before)

    const notes = tempDir('dpo-notes-')
    writeFileSync(path.join(notes, 'config.json'), '{"mine": true}')
    const r2 = runCli(['run', '--out', notes, ...SHORT])
    expect(r2.code).toBe(1)
    expect(readFileSync(path.join(notes, 'config.json'), 'utf8')).toBe('{"mine": true}')
  })

  it('creates a new folder, reuses its own run directory, and marks both', () => {
    const out = path.join(tempDir('dpo-runs-'), 'nested', 'run')
    const first = runCli(['run', '--out', out, ...SHORT])
    expect(first.code, first.stderr).toBe(0)
    expect(existsSync(path.join(out, '.dpo-studio-run'))).toBe(true)
    const again = runCli(['run', '--out', out, ...SHORT])
    expect(again.code, again.stderr).toBe(0)
    expect(readJson(out, 'run_status.json')).toMatchObject({ status: 'completed', phase: 'done' })
    // The lock is released when a run ends.
    expect(existsSync(path.join(out, '.dpo-studio-run.lock'))).toBe(false)
  })
})

describe('run directory lock', () => {
  it('a second run on the same --out fails at once with a clear message; the first completes unmixed', async () => {
    const out = tempDir('dpo-lock-')
    const first = startCli([
      'run',
      '--out',
      out,
      '--data-size',
      '40',
      '--epochs',
      '2',
      '--grad-accum',
      '2',
      '--max-new-tokens',
      '8',
      '--seed',
      '1',
    ])
    await first.waitFor(/training: \d+ steps/)
    const second = runCli(['run', '--out', out, ...SHORT, '--seed', '2'])
    expect(second.code).toBe(1)
    expect(lastErrorLine(second)).toMatch(
      new RegExp(`E_RUN_LOCKED.*in use by dpo-studio run \\(pid ${first.child.pid} on ${hostname()}`),
    )
    const r = await first.done
    expect(r.code, r.stderr).toBe(0)
    // Everything in the folder is the first run's: its seed, its 40 steps (40 pairs x 2 epochs / 2), one adapter.
    expect(readJson(out, 'config.json').params.seed).toBe(1)
    expect(jsonl(path.join(out, 'metrics.jsonl')).map((m) => m.step)).toEqual(
      Array.from({ length: 40 }, (_, i) => i + 1),
    )
    expect(readJson(out, 'train_summary.json')).toMatchObject({ status: 'completed', global_step: 40 })
  })

  it('takes over a stale lock left by a process that is gone', () => {
    const out = tempDir('dpo-stale-')
    writeFileSync(path.join(out, '.dpo-studio-run'), '{}')
    // pid 2^22 + 1 is above Linux's pid_max default range in use here; no such process.
    writeFileSync(
      path.join(out, '.dpo-studio-run.lock'),
      JSON.stringify({
        pid: 4194305,
        hostname: hostname(),
        started: '2024-01-01T00:00:00Z',
        command: 'dpo-studio run',
      }),
    )
    const r = runCli(['run', '--out', out, ...SHORT])
    expect(r.code, r.stderr).toBe(0)
    expect(existsSync(path.join(out, '.dpo-studio-run.lock'))).toBe(false)
  })
})

describe('stopping a run with a signal', () => {
  it('SIGTERM stops like Ctrl-C: a clean stop after the micro-batch, adapter and summary kept, phase recorded (exit 143)', async () => {
    const out = tempDir('dpo-term-')
    const run = startCli(['run', '--out', out])
    await run.waitFor(/step 3: loss/)
    run.child.kill('SIGTERM')
    const r = await run.done
    expect(r.code, r.stderr).toBe(143)
    expect(lastErrorLine(r)).toMatch(/cancelled during training; kept in .*adapter\/ \(as of step \d+ of 28\)/)
    const summary = readJson(out, 'train_summary.json')
    expect(summary.status).toBe('cancelled')
    expect(summary.cancelled_at_step).toBeGreaterThanOrEqual(3)
    expect(readJson(out, 'adapter', 'training_state.json')).toMatchObject({
      status: 'cancelled',
      global_step: summary.cancelled_at_step,
    })
    expect(readJson(out, 'run_status.json')).toMatchObject({
      status: 'cancelled',
      cancelledIn: 'train',
      reason: 'cancelled during training',
    })
    expect(jsonl(path.join(out, 'metrics.jsonl'))).toHaveLength(summary.cancelled_at_step)
  })

  it('Ctrl-C during the trained answers: no file says completed; run_status says where it stopped', async () => {
    const out = tempDir('dpo-int-')
    const prompts = path.join(tempDir('dpo-prompts-'), 'prompts.jsonl')
    // Many prompts so that the trained-answers phase lasts long enough to be interrupted.
    writeFileSync(
      prompts,
      Array.from({ length: 400 }, (_, i) =>
        JSON.stringify({ id: i + 1, prompt: `第${i + 1}題：你支持還是反對？` }),
      ).join('\n'),
    )
    mkdirSync(out, { recursive: true })
    const run = startCli([
      'run',
      '--out',
      out,
      '--test-prompts',
      prompts,
      '--data-size',
      '8',
      '--epochs',
      '1',
      '--grad-accum',
      '2',
      '--max-new-tokens',
      '48',
    ])
    await run.waitFor(/trained responses: 400 prompts/)
    run.child.kill('SIGINT')
    const r = await run.done
    expect(r.code, r.stderr).toBe(130)
    expect(lastErrorLine(r)).toMatch(/cancelled during the trained responses/)
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
    expect(existsSync(path.join(out, 'comparison.json'))).toBe(false)
  })
})

describe('sweep --out', () => {
  it('refuses the model folder and a run directory, leaving both as they were', () => {
    const model = tempDir('dpo-model-')
    cpSync(DEMO, model, { recursive: true })
    const before = hashes(model)
    const r = runCli(['sweep', '--model', model, '--out', model, '--support-ratio', '0,1', ...SHORT])
    expect(r.code).toBe(1)
    expect(lastErrorLine(r)).toMatch(/E_NOT_RUN_DIR.*sweep folder .* is inside the model folder/)
    expect(hashes(model)).toEqual(before)

    const run = tempDir('dpo-run-')
    expect(runCli(['run', '--out', run, ...SHORT]).code).toBe(0)
    const runBefore = readdirSync(run).sort()
    const r2 = runCli(['sweep', '--out', run, '--support-ratio', '0,1', ...SHORT])
    expect(r2.code).toBe(1)
    expect(lastErrorLine(r2)).toMatch(/E_NOT_RUN_DIR.*is not a DPO Studio sweep folder/)
    expect(readdirSync(run).sort()).toEqual(runBefore)
  })

  it('SIGTERM stops the ratio run in progress; sweep.json and that run say cancelled (exit 143), no lock is left', async () => {
    const out = path.join(tempDir('dpo-sweepterm-'), 'sweep')
    const sweep = startCli(['sweep', '--out', out, '--support-ratio', '0,1', ...SHORT])
    await sweep.waitFor(/step 3: loss/)
    sweep.child.kill('SIGTERM')
    const r = await sweep.done
    expect(r.code, r.stderr).toBe(143)
    expect(lastErrorLine(r)).toMatch(/sweep cancelled; .*sweep\.json keeps the 0 finished run/)
    expect(readJson(out, 'sweep.json')).toMatchObject({
      status: 'cancelled',
      runs: [{ support_ratio: 0, status: 'cancelled' }],
    })
    expect(readJson(out, 'ratio-0', 'run_status.json')).toMatchObject({ status: 'cancelled', cancelledIn: 'train' })
    expect(readdirSync(out).filter((f) => f.endsWith('.lock'))).toEqual([])
    expect(existsSync(path.join(out, 'ratio-0', '.dpo-studio-run.lock'))).toBe(false)
  })
})
