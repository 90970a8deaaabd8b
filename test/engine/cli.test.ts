// The CLI end to end on the real engine (CPU): stories260K's known greedy text, batch invariance on the HW6 test
// prompts, logps with TRL masking, and every bad input the foundation issue lists, each a one-line error.
import { existsSync, readFileSync, truncateSync, writeFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { dpoTokenize } from '../../src-main/services/tokenizer/dpoTokenize'
import { copyStories, rewriteHeader, tempDir } from '../helpers/modelFixtures'
import { lastErrorLine, runCli } from '../helpers/runCli'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')
const HW6 = sharedPath('datasets/genai-hw6')

function writePrompts(rows: unknown[] | string): string {
  const file = path.join(tempDir(), 'prompts.json')
  writeFileSync(file, typeof rows === 'string' ? rows : JSON.stringify(rows))
  return file
}

describe('dpo-studio info', () => {
  it('reports the engine version and why CUDA is or is not usable', () => {
    const r = runCli(['info', '--json'])
    expect(r.code).toBe(0)
    const info = JSON.parse(r.stdout)
    expect(info.engine).toMatch(/^\d+\.\d+\.\d+/)
    expect(info.backends.cpuThreads).toBeGreaterThan(0)
    // The kernel set this CPU runs and how it multiplies 4-bit weights (bf16 dot products or FMAs, and why).
    expect(info.backends.cpuKernels).toMatch(/^(avx512|avx2|generic|native), 4-bit products by (bf16 dot products|FMA)/)
    if (!info.backends.cudaAvailable) expect(info.backends.cudaReason.length).toBeGreaterThan(10)
  })
})

describe('dpo-studio generate', () => {
  it('reproduces stories260K greedy text with --quant none and stays close with nf4', () => {
    const prompts = writePrompts([{ id: 1, prompt: 'Once upon a time' }])
    const out = path.join(tempDir(), 'out.json')
    const exact = runCli([
      'generate',
      '--model',
      STORIES,
      '--prompts',
      prompts,
      '--quant',
      'none',
      '--max-new-tokens',
      '30',
      '--out',
      out,
    ])
    expect(exact.code, exact.stderr).toBe(0)
    const [row] = JSON.parse(readFileSync(out, 'utf8'))
    expect(row.id).toBe(1)
    expect(row.prompt).toBe('Once upon a time')
    // "Once upon a time" is exactly the first 4 known tokens after BOS (models/stories260K/README.md).
    expect(row.response.startsWith(', there was a little girl named Lily. She loved to play')).toBe(true)

    const nf4 = runCli([
      'generate',
      '--model',
      STORIES,
      '--prompts',
      prompts,
      '--quant',
      'nf4',
      '--max-new-tokens',
      '30',
      '--out',
      out,
    ])
    expect(nf4.code, nf4.stderr).toBe(0)
    expect(JSON.parse(readFileSync(out, 'utf8'))[0].response.startsWith(', there was a little girl')).toBe(true)
  })

  it('gives the same answers one prompt at a time and all in one batch (HW6 test prompts)', () => {
    const prompts = path.join(HW6, 'test_prompt.json')
    const dir = tempDir()
    const one = runCli([
      'generate',
      '--model',
      STORIES,
      '--prompts',
      prompts,
      '--batch-size',
      '1',
      '--max-new-tokens',
      '24',
      '--out',
      path.join(dir, 'a.json'),
    ])
    const all = runCli([
      'generate',
      '--model',
      STORIES,
      '--prompts',
      prompts,
      '--batch-size',
      '10',
      '--max-new-tokens',
      '24',
      '--out',
      path.join(dir, 'b.json'),
    ])
    expect(one.code, one.stderr).toBe(0)
    expect(all.code, all.stderr).toBe(0)
    const a = JSON.parse(readFileSync(path.join(dir, 'a.json'), 'utf8'))
    const b = JSON.parse(readFileSync(path.join(dir, 'b.json'), 'utf8'))
    expect(a).toHaveLength(10)
    expect(b).toEqual(a)
    expect(a.map((r: { id: number }) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
  })
})

describe('dpo-studio logps', () => {
  it('scores every HW6 pair with TRL masking, identical to the engine called directly', async () => {
    const out = path.join(tempDir(), 'logps.json')
    const r = runCli([
      'logps',
      '--model',
      STORIES,
      '--pairs',
      path.join(HW6, 'labelled_data.json'),
      '--quant',
      'none',
      '--out',
      out,
    ])
    expect(r.code, r.stderr).toBe(0)
    const rows = JSON.parse(readFileSync(out, 'utf8'))
    expect(rows).toHaveLength(50)

    // Recompute pair 1 (support_ratio 0.1 -> row 1 prefers support) through the addon directly.
    const data = JSON.parse(readFileSync(path.join(HW6, 'labelled_data.json'), 'utf8'))
    const tok = await TextTokenizer.fromDir(STORIES)
    const t = dpoTokenize(tok, `<s>${data[0].prompt}`, data[0].support, data[0].oppose)
    const model = await loadAddon().loadModel(STORIES, { quant: 'none', backend: 'cpu' })
    const [c, rej] = await model.logps(
      [
        { ids: t.chosen.ids, labels: t.chosen.labels },
        { ids: t.rejected.ids, labels: t.rejected.labels },
      ],
      tok.padId ?? 2,
    )
    model.dispose()
    expect(rows[0].chosen_tokens).toBe(t.chosen.ids.length - t.chosen.promptLength)
    expect(rows[0].rejected_tokens).toBe(t.rejected.ids.length - t.rejected.promptLength)
    expect(rows[0].chosen_logp).toBeCloseTo(c!.logp, 6)
    expect(rows[0].rejected_logp).toBeCloseTo(rej!.logp, 6)
    for (const row of rows) {
      expect(row.chosen_logp).toBeLessThan(0)
      expect(Number.isFinite(row.rejected_logp)).toBe(true)
      // Chinese text falls back to bytes in this 512-token vocabulary: several tokens per character.
      expect(row.chosen_tokens).toBeGreaterThan(20)
    }
  })
})

describe('bad input: one clear line, non-zero exit, no output file', () => {
  const goodPrompts = writePrompts([{ id: 1, prompt: 'Hello' }])

  function expectFailure(args: string[], ...needles: string[]) {
    const out = path.join(tempDir(), 'out.json')
    const r = runCli([...args, '--out', out])
    expect(r.code).not.toBe(0)
    const line = lastErrorLine(r)
    expect(line).toMatch(/^dpo-studio: error/)
    for (const n of needles) expect(line).toContain(n)
    expect(existsSync(out)).toBe(false)
    return line
  }

  it('truncated safetensors', () => {
    const dir = copyStories()
    const file = path.join(dir, 'model.safetensors')
    truncateSync(file, statSync(file).size - 1000)
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'model.safetensors')
  })

  it('header length past the end of the file', () => {
    const dir = copyStories()
    const file = path.join(dir, 'model.safetensors')
    const bytes = readFileSync(file)
    bytes.writeBigUInt64LE(BigInt(bytes.length + 10), 0)
    writeFileSync(file, bytes)
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'header')
  })

  it('tensor offsets outside the data', () => {
    const dir = copyStories()
    const file = path.join(dir, 'model.safetensors')
    rewriteHeader(file, (h) => {
      const t = h['model.norm.weight']
      t.data_offsets = [t.data_offsets[0] + 10_000_000, t.data_offsets[1] + 10_000_000]
    })
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'model.norm.weight')
  })

  it('wrong dtype for a named tensor', () => {
    const dir = copyStories()
    rewriteHeader(path.join(dir, 'model.safetensors'), (h) => {
      const t = h['model.norm.weight']
      t.dtype = 'I32' // same byte size as F32, so only the dtype is wrong
    })
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'model.norm.weight', 'I32')
  })

  it('wrong shape for a named tensor', () => {
    const dir = copyStories()
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))
    cfg.intermediate_size = 160
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg))
    expectFailure(
      ['generate', '--model', dir, '--prompts', goodPrompts],
      'E_BAD_MODEL',
      'model.layers.0.mlp.gate_proj.weight',
      '[172, 64]',
    )
  })

  it('config.json missing a field', () => {
    const dir = copyStories()
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))
    delete cfg.num_hidden_layers
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg))
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'num_hidden_layers')
  })

  it('unknown architecture', () => {
    const dir = copyStories()
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'))
    cfg.architectures = ['GPT2LMHeadModel']
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg))
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'E_BAD_MODEL', 'GPT2LMHeadModel')
  })

  it('a model directory without tokenizer files', () => {
    const dir = copyStories(['tokenizer.json'])
    expectFailure(['generate', '--model', dir, '--prompts', goodPrompts], 'tokenizer.json')
  })

  it('an empty prompts file', () => {
    expectFailure(['generate', '--model', STORIES, '--prompts', writePrompts('')], 'E_BAD_INPUT', 'prompts.json')
  })

  it('a prompts file with a non-string prompt', () => {
    const file = writePrompts([
      { id: 1, prompt: 'ok' },
      { id: 2, prompt: 42 },
    ])
    expectFailure(['generate', '--model', STORIES, '--prompts', file], 'E_BAD_INPUT', 'row 2', 'prompt')
  })

  it('a bad flag value', () => {
    const r = runCli([
      'generate',
      '--model',
      STORIES,
      '--prompts',
      goodPrompts,
      '--max-new-tokens',
      'lots',
      '--out',
      '/tmp/x.json',
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--max-new-tokens')
  })

  it('CUDA requested on a machine without a usable GPU', () => {
    const info = JSON.parse(runCli(['info', '--json']).stdout)
    if (info.backends.cudaAvailable) return
    expectFailure(['generate', '--model', STORIES, '--prompts', goodPrompts, '--backend', 'cuda'], 'E_NO_CUDA', 'CUDA')
  })
})
