// Resume on the real engine through the real CLI (CPU, stories260K, the HW6 data; docs/resume.md): a run whose process
// is SIGKILLed after step k and then resumed ends with the uninterrupted run's adapter bytes, metrics.jsonl (wall-clock
// fields aside), steps.jsonl and answers, for fp32 AdamW (`run --resume`, remaining phases included) and the 8-bit
// optimizer (`train --resume`); a changed dataset, model file or parameter is refused with what differs.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { CHECKPOINT_FILE, readCheckpoint } from '../../src-main/services/training/checkpoint'
import { copyStories, tempDir } from '../helpers/modelFixtures'
import { lastErrorLine, runCli } from '../helpers/runCli'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')
const BIN = path.join(repoRoot, 'bin/dpo-studio.mjs')
// 12 pairs, 2 per step: 6 steps, a checkpoint every 2.
const SMALL = ['--data-size', '12', '--grad-accum', '2', '--checkpoint-every', '2', '--backend', 'cpu']

beforeAll(() => {
  process.env.DPO_STUDIO_CACHE = tempDir('dpo-cache-')
})

/** Starts the CLI as one node process, lets it log step `step` (and checkpoint, when due), then SIGKILLs it. */
async function killAfterStep(args: string[], step: number): Promise<void> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: repoRoot,
    env: { ...process.env, DPO_STUDIO_TEST_HOOKS: '1', DPO_STUDIO_TEST_STALL_AFTER_STEP: String(step) },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (stderr.includes(`test hook: stalled after step ${step}`)) resolve()
    })
    child.once('exit', (code) => reject(new Error(`the CLI ended (code ${code}) before step ${step}:\n${stderr}`)))
  })
  const exited = once(child, 'exit')
  child.kill('SIGKILL')
  const [, signal] = (await exited) as [number | null, string | null]
  expect(signal).toBe('SIGKILL')
}

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
/** metrics.jsonl without elapsed_s and pairs_per_s: the wall clock is the one thing two runs never share. */
const numbers = (dir: string) =>
  lines(path.join(dir, 'metrics.jsonl')).map(({ elapsed_s: _e, pairs_per_s: _p, ...rest }) => rest)
const bytes = (...p: string[]) => readFileSync(path.join(...p))

function expectSameTraining(resumed: string, whole: string): void {
  expect(
    bytes(resumed, 'adapter/adapter_model.safetensors').equals(bytes(whole, 'adapter/adapter_model.safetensors')),
  ).toBe(true)
  expect(bytes(resumed, 'adapter/adapter_config.json').equals(bytes(whole, 'adapter/adapter_config.json'))).toBe(true)
  expect(numbers(resumed)).toEqual(numbers(whole))
  expect(numbers(resumed).map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6])
  expect(bytes(resumed, 'steps.jsonl').equals(bytes(whole, 'steps.jsonl'))).toBe(true)
  const [a, b] = [whole, resumed].map(
    (d) => JSON.parse(readFileSync(path.join(d, 'train_summary.json'), 'utf8')) as Record<string, unknown>,
  )
  for (const k of ['status', 'global_step', 'train_loss', 'pairs_trained', 'data_fingerprint'])
    expect(b![k], k).toEqual(a![k])
  expect(existsSync(path.join(resumed, CHECKPOINT_FILE))).toBe(false)
}

describe('a killed run, resumed, equals the run that was never stopped', () => {
  it('fp32 AdamW, `run --resume`: killed after step 3, the checkpoint at 2, then the answers and the comparison', async () => {
    const args = [
      '--model',
      STORIES,
      '--dataset',
      HW6,
      '--test-prompts',
      path.join(HW6, 'test_prompt.json'),
      '--max-new-tokens',
      '8',
      ...SMALL,
      '--optim',
      'adamw',
    ]
    const whole = path.join(tempDir(), 'whole')
    const r = runCli(['run', ...args, '--out', whole])
    expect(r.code, r.stderr).toBe(0)

    const killed = path.join(tempDir(), 'killed')
    await killAfterStep(['run', ...args, '--out', killed], 3)
    expect(readCheckpoint(killed)!.state.global_step).toBe(2)
    expect(lines(path.join(killed, 'metrics.jsonl'))).toHaveLength(3) // step 3 is logged again after the resume
    expect(existsSync(path.join(killed, 'adapter'))).toBe(false)

    const resumed = runCli(['run', '--resume', killed])
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stderr).toContain('resuming from the checkpoint at step 2 of 6')
    expectSameTraining(killed, whole)
    for (const f of ['responses_original.json', 'responses_trained.json', 'comparison.json'])
      expect(bytes(killed, f).equals(bytes(whole, f)), f).toBe(true)
  })

  it('8-bit AdamW, `train --resume`: refuses a changed dataset, model or parameter, then continues from step 4', async () => {
    const model = copyStories()
    const data = tempDir('dpo-data-')
    copyFileSync(path.join(HW6, 'labelled_data.json'), path.join(data, 'labelled_data.json'))
    const args = ['--model', model, '--dataset', data, ...SMALL, '--optim', 'paged_adamw_8bit']
    const whole = path.join(tempDir(), 'whole')
    const r = runCli(['train', ...args, '--out', whole])
    expect(r.code, r.stderr).toBe(0)

    const killed = path.join(tempDir(), 'killed')
    await killAfterStep(['train', ...args, '--out', killed], 5)
    // The 8-bit state is in the checkpoint: blockwise codes (4096-element A and q_proj B) and the 32-bit path (v_proj B).
    const c = readCheckpoint(killed)!
    expect(c.state.global_step).toBe(4)
    expect(c.training.optimizer).toBe('paged_adamw_8bit')
    expect(new Set(c.training.tensors.map((t) => t.layout))).toEqual(new Set(['bnb8_blockwise', 'bnb32']))
    expect(c.training.tensors.every((t) => t.step === 4)).toBe(true)
    const before = readFileSync(path.join(killed, 'metrics.jsonl'))

    const refuse = (extra: string[], ...needles: string[]) => {
      const x = runCli(['train', '--resume', killed, ...extra])
      expect(x.code, x.stderr).toBe(1)
      const line = lastErrorLine(x)
      expect(line).toContain('E_RESUME_MISMATCH')
      for (const n of needles) expect(line).toContain(n)
    }
    const file = path.join(data, 'labelled_data.json')
    const original = readFileSync(file)
    writeFileSync(file, Buffer.concat([original, Buffer.from('\n')]))
    refuse([], `dataset file ${file} changed since the run started`)
    writeFileSync(file, original)
    const weights = path.join(model, 'model.safetensors')
    const w = readFileSync(weights)
    writeFileSync(weights, Buffer.concat([w.subarray(0, w.length - 4), Buffer.from([1, 2, 3, 4])]))
    refuse([], 'model.safetensors has other contents')
    writeFileSync(weights, w)
    refuse(['--lr', '1e-3', '--beta', '0.1'], 'learningRate: 0.001 here, 0.0002 in the run')
    // Refusals change nothing in the run directory.
    expect(readFileSync(path.join(killed, 'metrics.jsonl')).equals(before)).toBe(true)
    expect(readCheckpoint(killed)!.state.global_step).toBe(4)

    const resumed = runCli(['train', '--resume', killed, '--checkpoint-every', '3'])
    expect(resumed.code, resumed.stderr).toBe(0)
    expectSameTraining(killed, whole)
    const again = runCli(['train', '--resume', killed])
    expect(lastErrorLine(again)).toMatch(/E_NOT_RESUMABLE.*nothing to resume: its training completed \(6 of 6 steps\)/)
  })
})
