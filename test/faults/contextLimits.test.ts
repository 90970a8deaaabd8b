// The model's context (max_position_embeddings, 256 on the demo model) in the CLI, the API and training: absurd
// --max-new-tokens values are "too large" with the context named, a prompt that fills the context is refused at once,
// answers stop where the context ends and say so, and training truncates as TRL does with max_length capped at the
// context (issue 10 items 7 and 8; docs/decisions.md "Context limits").
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from '../helpers/modelFixtures'
import { lastErrorLine, runCli } from '../helpers/runCli'
import { repoRoot } from '../helpers/sharedPath'
import { ApiClient, startServe } from '../helpers/webClient'
import { loadAddon } from '../../src-main/addon/loadAddon'

const DEMO = path.join(repoRoot, 'resources/demo-model')
const SAMPLE = path.join(repoRoot, 'resources/sample-dataset/zh')

function writeJson(name: string, value: unknown): string {
  const file = path.join(tempDir('dpo-ctx-'), name)
  writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value))
  return file
}
const shortPrompt = () => writeJson('short.json', [{ id: 1, prompt: '你支持還是反對？' }])

describe('generate: new tokens and prompts against the context', () => {
  it.each(['1000000', '2147483647', '1e12'])(
    '--max-new-tokens %s is too large for the 256-token context, said in one line',
    (n) => {
      const r = runCli([
        'generate',
        '--model',
        DEMO,
        '--prompts',
        shortPrompt(),
        '--max-new-tokens',
        n,
        '--out',
        path.join(tempDir(), 'o.json'),
      ])
      expect(r.code).toBe(1)
      expect(lastErrorLine(r)).toBe(
        `dpo-studio: error [E_TOO_LONG]: --max-new-tokens ${Number(n)} is more than the model's context (256 tokens, max_position_embeddings); use at most 256`,
      )
    },
  )

  it('a value past any integer is "too large", not "not an integer"', () => {
    const r = runCli([
      'generate',
      '--model',
      DEMO,
      '--prompts',
      shortPrompt(),
      '--max-new-tokens',
      '1e400',
      '--out',
      path.join(tempDir(), 'o.json'),
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--max-new-tokens is too large, got '1e400'")
    expect(r.stderr).not.toMatch(/not an integer|must be a positive integer/)
  })

  it('a 16,000-character prompt is refused before any generation, naming the prompt and its length', () => {
    const prompts = writeJson('long.json', [
      { id: 'q1', prompt: '你好' },
      { id: 'q2', prompt: '市中心禁車'.repeat(3200) },
    ])
    const r = runCli(['generate', '--model', DEMO, '--prompts', prompts, '--out', path.join(tempDir(), 'o.json')])
    expect(r.code).toBe(1)
    expect(lastErrorLine(r)).toMatch(
      /E_TOO_LONG\]: prompt 2 \(id "q2"\) has \d{5} tokens with the chat template, which leaves no room for an answer in the model's context \(256 tokens\)/,
    )
    expect(r.stderr).not.toContain('generate:')
  })

  it('answers stop where prompt + answer fill the context, and the CLI says so', () => {
    // About 150 tokens with the template: 150 + 200 new tokens does not fit in 256.
    const prompts = writeJson('mid.json', [
      { id: 1, prompt: '市中心禁車是否能讓街道更乾淨？'.repeat(6) },
      { id: 2, prompt: '你好' },
    ])
    const out = path.join(tempDir(), 'o.json')
    const r = runCli(['generate', '--model', DEMO, '--prompts', prompts, '--max-new-tokens', '200', '--out', out])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(
      "note: 1 of 2 prompts leave fewer than the requested new tokens in the model's context (256 tokens): their answers stop at the context",
    )
    expect(JSON.parse(readFileSync(out, 'utf8'))).toHaveLength(2)
  })

  it('run checks its test prompts against the context before training, not after', () => {
    const prompts = writeJson('long.jsonl', JSON.stringify({ id: 7, prompt: '市中心禁車'.repeat(3200) }))
    const out = path.join(tempDir('dpo-ctx-run-'), 'run')
    const r = runCli(['run', '--out', out, '--test-prompts', prompts, '--data-size', '8'])
    expect(r.code).toBe(1)
    expect(lastErrorLine(r)).toMatch(/E_TOO_LONG\]: prompt 1 \(id 7\) has \d+ tokens/)
    expect(r.stderr).not.toMatch(/training:/)
    expect(JSON.parse(readFileSync(path.join(out, 'run_status.json'), 'utf8'))).toMatchObject({
      status: 'failed',
      phase: 'load',
    })
  })
})

describe('training: TRL truncation within the context', () => {
  it('caps max_length at the context, truncates long pairs as TRL does, and says so', () => {
    const rows = [
      { prompt: '市中心禁車'.repeat(3200), chosen: '支持。', rejected: '反對。' },
      { prompt: '你支持還是反對？', chosen: '支持。', rejected: '反對。' },
    ]
    const data = writeJson('trl.json', rows)
    const out = path.join(tempDir('dpo-ctx-train-'), 'run')
    const r = runCli(['train', '--model', DEMO, '--dataset', data, '--out', out, '--grad-accum', '1', '--lora-r', '4'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toContain(
      "max_length 512 is more than the model's context (256 tokens): training uses max_length 256, max_prompt_length 128",
    )
    expect(r.stderr).toContain(
      '1 of 2 pairs are longer than max_length 256: truncated as TRL does (the prompt keeps its last 128 tokens',
    )
    const summary = JSON.parse(readFileSync(path.join(out, 'train_summary.json'), 'utf8'))
    expect(summary).toMatchObject({ status: 'completed', max_length: 256, max_prompt_length: 128, truncated_pairs: 1 })
  })
})

describe('API: the same limits through the web host', () => {
  it('a generation job asking for more new tokens than the context fails with E_TOO_LONG and the context named', async () => {
    const serve = await startServe(tempDir('dpo-serve-'))
    const api = await ApiClient.open(serve.port, serve.token)
    try {
      await api.call('generateStart', {
        modelDir: DEMO,
        promptsPath: path.join(SAMPLE, 'test_prompt.json'),
        params: { maxNewTokens: 4096 },
      })
      const end = await api.waitForJob((e) => e.kind === 'end')
      expect(end.status).toBe('failed')
      expect(end.error).toMatchObject({
        code: 'E_TOO_LONG',
        message:
          "max new tokens 4096 is more than the model's context (256 tokens, max_position_embeddings); use at most 256",
      })
    } finally {
      api.close()
      serve.child.kill('SIGTERM')
      await serve.exited
    }
  })
})

/** Argument checks throw at once, engine checks reject the promise: either way a rejection here. */
const call = async <T>(f: () => Promise<T>): Promise<T> => f()

describe('engine: its own check, whatever the caller', () => {
  it('the addon refuses too many new tokens and too-long sequences with E_TOO_LONG, sizes never overflowed', async () => {
    const model = await loadAddon().loadModel(DEMO, { quant: 'none', backend: 'cpu' })
    try {
      for (const n of [1e12, 2 ** 31 - 1, 257]) {
        await expect(call(() => model.generate([[1, 5, 9]], { maxNewTokens: n, eosIds: [2] }))).rejects.toMatchObject({
          code: 'E_TOO_LONG',
          message: expect.stringMatching(
            new RegExp(`^maxNewTokens ${n} is more than the model's context \\(256 tokens`),
          ),
        })
      }
      await expect(
        call(() => model.generate([new Array(256).fill(5)], { maxNewTokens: 4, eosIds: [2] })),
      ).rejects.toMatchObject({ code: 'E_TOO_LONG' })
      // 250 prompt tokens + at most 6 new ones: the answer stops at the context and says why.
      const out = await model.generate([new Array(250).fill(5)], { maxNewTokens: 100, eosIds: [] })
      expect(out.finish[0]).toBe('context')
      expect(out.tokens[0]!.length).toBe(6)
      const seq = new Int32Array(257).fill(5)
      await expect(call(() => model.logps([{ ids: seq, labels: seq }], 2))).rejects.toMatchObject({
        code: 'E_TOO_LONG',
        message: expect.stringContaining('257 tokens'),
      })
    } finally {
      model.dispose()
    }
  })
})
