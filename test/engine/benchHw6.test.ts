// The issue-6 benchmark pipeline at a tiny shape on the CPU: the HW6 workload as the trainer tokenizes it
// (scripts/bench/makeWorkload.ts), a sharded random Mistral from `dpo-tool make-model`, and `dpo-tool bench-hw6`
// reading both and writing its JSON. Timings are not checked (BENCHMARKS.md holds them), only what was run.
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { makeWorkload, writeWorkload } from '../../scripts/bench/makeWorkload'
import { tempDir } from '../helpers/modelFixtures'
import { repoRoot, sharedPath } from '../helpers/sharedPath'

const TOOL = path.join(repoRoot, 'build/native/dpo-tool')

describe('HW6 benchmark workload', () => {
  it('holds the 50 notebook pairs with TRL labels and the 10 prompts with one BOS', async () => {
    const w = await makeWorkload(
      sharedPath('tokenizers', 'mistral-v0.1'),
      sharedPath('datasets', 'genai-hw6'),
      'breeze-v0_1',
    )
    expect(w.pairs).toHaveLength(50)
    expect(w.prompts).toHaveLength(10)
    expect(w.pad_id).toBe(2)
    expect(w.eos_ids).toEqual([2])
    for (const p of w.pairs) {
      for (const s of [p.chosen, p.rejected]) {
        expect(s.labels).toHaveLength(s.ids.length)
        expect(s.ids[0]).toBe(1) // the template's "<s>", and only one (docs/reference/dpo-data.md#bos-and-eos)
        expect(s.ids[1]).not.toBe(1)
        expect(s.ids.at(-1)).toBe(2) // EOS appended to the answer (step 5)
        const answerStart = s.labels.findIndex((l) => l !== -100)
        expect(answerStart).toBeGreaterThan(10)
        expect(s.labels.slice(answerStart)).toEqual(s.ids.slice(answerStart))
      }
    }
    for (const p of w.prompts) expect(p.slice(0, 2)).not.toEqual([1, 1])
    expect(w.stats.mean_sequence_tokens).toBeGreaterThan(40)
  })
})

describe('dpo-tool make-model + bench-hw6', () => {
  it('writes a sharded Mistral checkpoint and benchmarks the workload on it', async () => {
    expect(existsSync(TOOL), `${TOOL} is missing: run npm run build:native`).toBe(true)
    const dir = tempDir('dpo-bench-')
    const model = path.join(dir, 'model')
    execFileSync(TOOL, [
      'make-model',
      '--arch',
      'mistral',
      '--out',
      model,
      '--hidden',
      '64',
      '--layers',
      '2',
      '--heads',
      '4',
      '--kv-heads',
      '2',
      '--ffn',
      '128',
      '--vocab',
      '61952',
      '--shards',
      '3',
    ])
    const index = JSON.parse(readFileSync(path.join(model, 'model.safetensors.index.json'), 'utf8'))
    const shards = new Set(Object.values(index.weight_map as Record<string, string>))
    expect(shards.size).toBe(3)
    expect(JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8')).architectures).toEqual([
      'MistralForCausalLM',
    ])

    const workload = path.join(dir, 'workload.json')
    writeWorkload(
      workload,
      await makeWorkload(sharedPath('tokenizers', 'mistral-v0.1'), sharedPath('datasets', 'genai-hw6'), 'breeze-v0_1'),
    )
    const out = path.join(dir, 'bench.json')
    execFileSync(
      TOOL,
      [
        'bench-hw6',
        '--model',
        model,
        '--workload',
        workload,
        '--backend',
        'cpu',
        '--pairs',
        '9',
        '--prompts',
        '2',
        '--new',
        '4',
        '--json',
        out,
      ],
      { stdio: ['ignore', 'ignore', 'ignore'] },
    )
    const r = JSON.parse(readFileSync(out, 'utf8'))
    expect(r.params).toBe(2 * 61952 * 64 + 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64 + 2 * 64) + 64)
    expect(r.pairs).toBe(9)
    expect(r.optimizer_steps).toBe(2) // 8 + 1 micro-batches
    expect(r.step_loss[0]).toBeCloseTo(Math.log(2), 6) // lora_B = 0 at the first step (docs/reference/hw6-run.md)
    expect(r.generate_batched_tokens).toBe(8) // no EOS: every prompt runs all new tokens
    expect(r.batch_invariant).toBe(true)
    expect(r.train_pairs_per_s).toBeGreaterThan(0)
    // Cold and warm passes of both phases (BENCHMARKS.md, "Cold and warm passes"); the rates are the warm ones.
    for (const k of ['reference_cold_s', 'reference_s', 'train_cold_s', 'train_s']) expect(r[k]).toBeGreaterThan(0)
    expect(r.train_pairs_per_s).toBeCloseTo(9 / r.train_s, 6)
  })
})
