// Each tested family through the CLI on its tiny twin (real config fields and tokenizer, `dpo-tool make-model
// --family`): `run` with one DPO step between the original and trained answers (so `train` and `generate` both run
// on it), the run's config recording the template date and thinking mode, `generate` from a bitsandbytes 4-bit
// Qwen2.5 twin, and generation ending at any stop id of config.json and generation_config.json.
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { generateResponses } from '../../src-main/services/session/generateResponses'
import { openModel } from '../../src-main/services/session/modelSession'
import { promptText } from '../../src-main/services/session/promptText'
import { promptIds } from '../../src-main/services/tokenizer/chatTemplate'
import { FAMILIES, familyModel } from '../helpers/familyModels'
import { tempDir } from '../helpers/modelFixtures'
import { runCli } from '../helpers/runCli'
import { sharedPath } from '../helpers/sharedPath'

const HW6 = sharedPath('datasets', 'genai-hw6')

function promptsFile(): string {
  const file = path.join(tempDir(), 'prompts.json')
  writeFileSync(file, JSON.stringify([{ id: 1, prompt: '請介紹台灣的夜市。' }]))
  return file
}

const readJson = (file: string) => JSON.parse(readFileSync(file, 'utf8'))

describe('one DPO step and greedy answers per family, through the CLI', () => {
  const prompts = promptsFile()
  for (const family of FAMILIES) {
    it(family, () => {
      const out = path.join(tempDir('dpo-run-'), 'run')
      const extra =
        family === 'qwen3-0.6b'
          ? ['--enable-thinking', 'off']
          : family === 'llama-3.2-1b-instruct'
            ? ['--chat-date', '2026-03-05']
            : []
      const r = runCli([
        'run',
        '--model',
        familyModel(family),
        '--dataset',
        HW6,
        '--test-prompts',
        prompts,
        '--out',
        out,
        '--data-size',
        '1',
        '--grad-accum',
        '1',
        '--lora-r',
        '4',
        '--max-new-tokens',
        '4',
        '--backend',
        'cpu',
        ...extra,
      ])
      expect(r.code, r.stderr).toBe(0)
      const config = readJson(path.join(out, 'config.json'))
      expect(config.model.architecture).toBe(readJson(path.join(familyModel(family), 'config.json')).architectures[0])
      expect(config.params.chatDate).toMatch(/^\d{4}-\d{2}-\d{2}$/) // recorded, so a rerun renders the same prompts
      if (family === 'llama-3.2-1b-instruct') expect(config.params.chatDate).toBe('2026-03-05')
      expect(config.params.enableThinking).toBe(family === 'qwen3-0.6b' ? 'off' : 'default')
      const metrics = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(metrics).toHaveLength(1)
      expect(Number.isFinite(metrics[0].loss)).toBe(true)
      expect(metrics[0].loss).toBeCloseTo(Math.log(2), 3) // B = 0 at the first step: the policy is the reference
      for (const f of ['responses_original.json', 'responses_trained.json'])
        expect(readJson(path.join(out, f))).toHaveLength(1)
    })
  }
})

describe('dpo-studio info --model', () => {
  it("reports the engine loader's verdict on a folder", () => {
    const r = runCli(['info', '--json', '--model', familyModel('qwen3-0.6b')])
    expect(r.code, r.stderr).toBe(0)
    const info = JSON.parse(r.stdout)
    expect(info.model).toMatchObject({ architecture: 'Qwen3ForCausalLM', supported: true, note: '' })
  })
})

describe('generate from a bitsandbytes 4-bit checkpoint', () => {
  it('Qwen2.5 bnb-4bit answers with its biases kept', () => {
    const out = path.join(tempDir(), 'answers.json')
    const r = runCli([
      'generate',
      '--model',
      familyModel('qwen2.5-0.5b-instruct', { bnb4bit: true }),
      '--prompts',
      promptsFile(),
      '--max-new-tokens',
      '3',
      '--backend',
      'cpu',
      '--out',
      out,
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(readJson(out)).toHaveLength(1)
  })
})

describe('every eos id of config.json and generation_config.json ends generation', () => {
  // A random twin never writes <|end_of_text|> by chance, so the test takes a token the model does write (the 4th of
  // a free run) and lists it as a stop id beside the published ones, once in each file.
  it.each(['generation_config.json', 'config.json'])('Llama 3.2 twin, a stop id added to %s', async (file) => {
    const src = familyModel('llama-3.2-1b-instruct')
    const question = [{ id: 1, prompt: '請介紹台灣的夜市。' }]
    const style = { chatDate: '2026-03-05' }
    const free = await openModel(src, { quant: 'none', backend: 'cpu' })
    let tokens: number[]
    try {
      const ids = promptIds(free.tokenizer, promptText(free.tokenizer, question[0]!.prompt, style))
      tokens = [...(await free.native.generate([ids], { maxNewTokens: 8, eosIds: [] })).tokens[0]!]
    } finally {
      free.dispose()
    }
    const k = tokens.findIndex((t, i) => i >= 3 && !tokens.slice(0, i).includes(t))
    expect(k, `a fresh token among ${tokens}`).toBeGreaterThanOrEqual(3)
    const dir = tempDir('dpo-stop-')
    for (const f of readdirSync(src)) copyFileSync(path.join(src, f), path.join(dir, f))
    const cfg = readJson(path.join(dir, file))
    writeFileSync(path.join(dir, file), JSON.stringify({ ...cfg, eos_token_id: [128001, tokens[k], 128009] }))
    const session = await openModel(dir, { quant: 'none', backend: 'cpu' })
    try {
      expect([...session.tokenizer.eosIds]).toContain(tokens[k])
      const [r] = await generateResponses(session, { prompts: question, ...style, maxNewTokens: 8 })
      expect(r!.finish).toBe('eos')
      expect(r!.tokens).toBe(k + 1)
    } finally {
      session.dispose()
    }
  })
})
