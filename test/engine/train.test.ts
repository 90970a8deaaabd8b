// DPO training end to end on the real engine (CPU): the notebook on stories260K with the HW6 data
// (docs/reference/hw6-run.md#the-first-two-steps-log-ln-2: ln 2 at steps 1-2, lr 0 at step 1, 6 steps to epoch 0.96,
// the run directory and PEFT adapter), and the embedded demo: support_ratio 0.1 and 0.9 each move at least 8 of 10 test
// answers to the preferred side.
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { classifyStance } from '../../scripts/demo-model/stance'
import { decodeSafetensors } from '../../src-main/services/training/adapterFiles'
import { tempDir } from '../helpers/modelFixtures'
import { runCli } from '../helpers/runCli'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

const HW6 = sharedPath('datasets/genai-hw6')

beforeAll(() => {
  // Reference log-prob caches go to a temp folder, not the user's home.
  process.env.DPO_STUDIO_CACHE = tempDir('dpo-cache-')
})

function readJsonl(file: string): Array<Record<string, number>> {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))
}

describe('dpo-studio run on stories260K with the HW6 data', () => {
  it('follows the notebook: 6 steps, ln 2 first, PEFT adapter, comparison of 10 answers', () => {
    const out = path.join(tempDir(), 'run')
    const r = runCli([
      'run',
      '--model',
      sharedPath('models/stories260K'),
      '--dataset',
      HW6,
      '--test-prompts',
      path.join(HW6, 'test_prompt.json'),
      '--max-new-tokens',
      '16',
      '--out',
      out,
    ])
    expect(r.code, r.stderr).toBe(0)

    const rows = readJsonl(path.join(out, 'metrics.jsonl'))
    expect(rows.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6])
    // B = 0 at init and lr = 0 at step 1: the first two logged losses are exactly ln 2
    // (docs/reference/hw6-run.md#the-first-two-steps-log-ln-2).
    expect(rows[0]!.loss).toBe(0.6931)
    expect(rows[1]!.loss).toBe(0.6931)
    expect(rows[0]!['rewards/margins']).toBe(0)
    expect(rows.map((x) => x.learning_rate)).toEqual(
      [2e-4, 1.6e-4, 1.2e-4, 8e-5, 4e-5, 0].map((v) => expect.closeTo(v, 12) as unknown as number),
    )
    expect(rows.map((x) => x.epoch)).toEqual(
      [0.16, 0.32, 0.48, 0.64, 0.8, 0.96].map((v) => expect.closeTo(v, 9) as unknown as number),
    )
    for (const key of [
      'grad_norm',
      'rewards/chosen',
      'rewards/rejected',
      'rewards/accuracies',
      'logps/chosen',
      'logps/rejected',
      'logits/chosen',
      'logits/rejected',
    ])
      expect(Number.isFinite(rows[5]![key]), key).toBe(true)
    // Each step sees fresh pairs, on which this byte-level story model barely generalises; the fall shows below.
    expect(rows.slice(2).some((x) => x.loss !== 0.6931)).toBe(true)

    // The engine's backend memory peaked above the stories260K weights and a step's activations (~1 MB).
    const summary = JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))
    expect(summary.peak_memory_bytes).toBeGreaterThan(1e6)

    const comparison = JSON.parse(readFileSync(path.join(out, 'comparison.json'), 'utf8'))
    expect(comparison).toHaveLength(10)
    expect(Object.keys(comparison[0]).sort()).toEqual([
      'id',
      'prompt',
      'response_from_original_model',
      'response_from_trained_model',
    ])
    for (const f of ['config.json', 'responses_original.json', 'responses_trained.json', 'steps.jsonl'])
      expect(existsSync(path.join(out, f)), f).toBe(true)

    const cfg = JSON.parse(readFileSync(path.join(out, 'adapter/adapter_config.json'), 'utf8'))
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      r: 64,
      lora_alpha: 16,
      lora_dropout: 0.1,
      task_type: 'CAUSAL_LM',
      bias: 'none',
      inference_mode: true,
    })
    expect([...cfg.target_modules].sort()).toEqual(['q_proj', 'v_proj'])
    const st = decodeSafetensors(readFileSync(path.join(out, 'adapter/adapter_model.safetensors')), 'adapter')
    const names = st.tensors.map((t) => t.name).sort()
    expect(names).toHaveLength(5 * 2 * 2)
    expect(names[0]).toBe('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')
    const qA = st.tensors.find((t) => t.name === 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')!
    expect(qA.shape).toEqual([64, 64])
    expect(qA.dtype).toBe('F32')
  })

  it('lowers the loss once pairs come round again (3 epochs)', () => {
    const out = path.join(tempDir(), 'train3')
    const r = runCli([
      'train',
      '--model',
      sharedPath('models/stories260K'),
      '--dataset',
      HW6,
      '--epochs',
      '3',
      '--out',
      out,
    ])
    expect(r.code, r.stderr).toBe(0)
    const rows = readJsonl(path.join(out, 'metrics.jsonl'))
    expect(rows).toHaveLength(18)
    const later = rows.slice(6)
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
    expect(mean(later.map((x) => x.loss))).toBeLessThan(Math.log(2) - 0.005)
    expect(mean(later.map((x) => x['rewards/margins']))).toBeGreaterThan(0)
    expect(existsSync(path.join(out, 'adapter/adapter_model.safetensors'))).toBe(true)
  })
})

describe('the embedded demo: DPO visibly moves the answers', () => {
  const rows = JSON.parse(readFileSync(path.join(repoRoot, 'resources/sample-dataset/zh/labelled_data.json'), 'utf8'))
  for (const [ratio, preferred] of [
    ['0.1', 'oppose'],
    ['0.9', 'support'],
  ] as const) {
    it(`support_ratio ${ratio}: at least 8 of 10 trained answers take the ${preferred} side`, () => {
      const out = path.join(tempDir(), 'demo')
      const started = Date.now()
      const r = runCli(['run', '--support-ratio', ratio, '--out', out])
      expect(r.code, r.stderr).toBe(0)
      expect(Date.now() - started).toBeLessThan(60_000)
      const comparison = JSON.parse(readFileSync(path.join(out, 'comparison.json'), 'utf8'))
      const sides = comparison.map((c: { response_from_trained_model: string }) =>
        classifyStance(c.response_from_trained_model, rows),
      )
      expect(sides.filter((s: string) => s === preferred).length).toBeGreaterThanOrEqual(8)
      // The log-prob margin moved the same way: the policy prefers the chosen answers more than the reference does.
      const metrics = readJsonl(path.join(out, 'metrics.jsonl'))
      const last = metrics[metrics.length - 1]!
      expect(last['rewards/margins']).toBeGreaterThan(0)
      expect(last['rewards/accuracies']).toBeGreaterThanOrEqual(0.75)
    })
  }
})

describe('Ctrl-C during training', () => {
  it('stops after the current micro-batch, exits 130 and leaves a consistent run directory', async () => {
    const out = path.join(tempDir(), 'interrupted')
    const child = spawn(
      process.execPath,
      [
        path.join(repoRoot, 'bin/dpo-studio.mjs'),
        'train',
        '--model',
        path.join(repoRoot, 'resources/demo-model'),
        '--dataset',
        path.join(repoRoot, 'resources/sample-dataset/zh'),
        '--epochs',
        '20',
        '--out',
        out,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], env: process.env },
    )
    let stderr = ''
    child.stderr.on('data', (d) => (stderr += String(d)))
    // Interrupt once two steps are on disk.
    const metrics = path.join(out, 'metrics.jsonl')
    const deadline = Date.now() + 60_000
    while (
      Date.now() < deadline &&
      !(existsSync(metrics) && readFileSync(metrics, 'utf8').trim().split('\n').length >= 2)
    )
      await new Promise((r) => setTimeout(r, 100))
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    expect(code, stderr).toBe(130)
    const rows = readJsonl(metrics) // every line parses: nothing half-written
    expect(rows.length).toBeGreaterThanOrEqual(2)
    expect(rows.length).toBeLessThan(20 * 8)
    const state = JSON.parse(readFileSync(path.join(out, 'adapter/training_state.json'), 'utf8'))
    expect(JSON.stringify(state)).toMatch(/cancel/)
    expect(existsSync(path.join(out, 'adapter/adapter_model.safetensors'))).toBe(true)
    expect(existsSync(path.join(out, 'adapter/adapter_config.json'))).toBe(true)
  })
})
