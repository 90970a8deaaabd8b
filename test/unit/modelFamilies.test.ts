// The tested families' prompts with their real tokenizers and templates (tiny twins from `dpo-tool make-model
// --family`): the one BOS rule (TRL's tokenize_row step 4) for training, log-probs and generation, every stop id,
// Llama 3.1/3.2 template dates, Qwen3's enable_thinking, and the model panel asking the engine what will load.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadPreferenceData, preferencePairs, type PreferencePair } from '../../src-main/services/data/preferenceFile'
import { promptStyleOf, promptText } from '../../src-main/services/session/promptText'
import { inspectModel } from '../../src-main/services/models/inspectModel'
import { promptIds, renderPrompt, todayChatDate } from '../../src-main/services/tokenizer/chatTemplate'
import { dpoTokenize } from '../../src-main/services/tokenizer/dpoTokenize'
import { strftime } from '../../src-main/services/tokenizer/strftime'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { FAMILIES, familyModel, type Family } from '../helpers/familyModels'
import { tempDir } from '../helpers/modelFixtures'
import { sharedPath } from '../helpers/sharedPath'

const tokenizers = new Map<Family, TextTokenizer>()
let pair: PreferencePair

beforeAll(async () => {
  for (const f of FAMILIES) tokenizers.set(f, await TextTokenizer.fromDir(familyModel(f)))
  pair = preferencePairs(await loadPreferenceData(sharedPath('datasets', 'genai-hw6')))[0]!
}, 300_000)

const tok = (f: Family) => tokenizers.get(f)!

// What each family's prompt must start with: its BOS exactly once, or (Qwen, no BOS token) the template's first token.
const OPENING: Record<Family, { bos: number | null; first: number[] }> = {
  'llama-3.2-1b-instruct': { bos: 128000, first: [128000, 128006] }, // <|begin_of_text|><|start_header_id|>
  'llama-3.1-8b-instruct': { bos: 128000, first: [128000, 128006] },
  'qwen2.5-0.5b-instruct': { bos: null, first: [151644] }, // <|im_start|>
  'qwen3-0.6b': { bos: null, first: [151644] },
  'mistral-7b-instruct-v0.3': { bos: 1, first: [1] }, // no template: <s> + the question
  'breeze-7b-instruct-v1_0': { bos: 1, first: [1] }, // the template writes <s> itself
}

describe("BOS exactly as the reference stack: the tokenizer's, once, in training, log-probs and generation", () => {
  for (const f of FAMILIES) {
    it(f, () => {
      const t = tok(f)
      const { bos, first } = OPENING[f]
      expect(t.bosId).toBe(bos)
      const text = promptText(
        t,
        pair.prompt,
        promptStyleOf({ systemMessage: '回覆請少於20字', enableThinking: 'default', chatDate: '2026-03-05' }),
      )
      const trained = dpoTokenize(t, text, pair.chosen, pair.rejected)
      const generated = promptIds(t, text)
      // TRL 0.9-0.11 tokenize_row: the prompt without special tokens, BOS prepended iff the tokenizer has one and
      // the ids do not already start with it (trl 0.11 add_bos_token_if_needed; 0.9 would insert None for Qwen).
      const trl = t.encode(text, { addSpecialTokens: false })
      if (t.bosId !== null && trl[0] !== t.bosId) trl.unshift(t.bosId)
      expect(trained.promptIds).toEqual(trl)
      expect(trained.chosen.ids.slice(0, trained.chosen.promptLength - 1)).toEqual(
        trl.slice(0, trained.chosen.promptLength - 1),
      )
      expect(generated).toEqual(trl)
      expect(trl.slice(0, first.length)).toEqual(first)
      const bosCount = trl.filter((id) => id === (bos ?? 151643)).length
      expect(bosCount).toBe(bos === null ? 0 : 1) // Qwen: not even config.json's bos_token_id <|endoftext|>
    })
  }
})

describe('stop ids: every eos id of the tokenizer, config.json and generation_config.json', () => {
  it('Llama 3.x stops on <|eot_id|>, <|eom_id|> and <|end_of_text|>', () => {
    for (const f of ['llama-3.2-1b-instruct', 'llama-3.1-8b-instruct'] as const) {
      expect([...tok(f).eosIds].sort()).toEqual([128001, 128008, 128009])
      expect(tok(f).eosId).toBe(128009)
    }
  })
  it('Qwen stops on <|im_end|> and <|endoftext|>', () => {
    for (const f of ['qwen2.5-0.5b-instruct', 'qwen3-0.6b'] as const)
      expect([...tok(f).eosIds].sort()).toEqual([151643, 151645])
  })
})

describe('chat templates render as transformers renders them', () => {
  it('Llama 3.2 prints the run\'s date through strftime_now; Llama 3.1 keeps its own "26 Jul 2024"', () => {
    const l32 = renderPrompt(tok('llama-3.2-1b-instruct'), 'Hi', { chatDate: '2026-03-05' }).text
    expect(l32).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n' +
        'Today Date: 05 Mar 2026\n\n回覆請少於20字<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    )
    const today = strftime(new Date(), '%d %b %Y')
    expect(renderPrompt(tok('llama-3.2-1b-instruct'), 'Hi').text).toContain(`Today Date: ${today}\n`)
    const l31 = renderPrompt(tok('llama-3.1-8b-instruct'), 'Hi', { chatDate: '2026-03-05' }).text
    expect(l31).toContain('Today Date: 26 Jul 2024\n')
    expect(l31).not.toContain('Environment: ipython') // tools is None, as apply_chat_template passes it
  })

  it("Qwen3's enable_thinking: off adds the empty think block, default and on leave the template's own", () => {
    const q = tok('qwen3-0.6b')
    const off = renderPrompt(q, 'Hi', { enableThinking: false }).text
    expect(off.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true)
    expect(renderPrompt(q, 'Hi').text.endsWith('<|im_start|>assistant\n')).toBe(true)
    expect(renderPrompt(q, 'Hi', { enableThinking: true }).text).toBe(renderPrompt(q, 'Hi').text)
    expect(promptStyleOf({ systemMessage: 's', enableThinking: 'off' })).toEqual({ system: 's', enableThinking: false })
    expect(promptStyleOf({ systemMessage: 's', enableThinking: 'default', chatDate: '2026-01-02' })).toEqual({
      system: 's',
      chatDate: '2026-01-02',
    })
  })

  it('strftime_now writes C-locale names whatever the host locale', () => {
    const d = new Date(2026, 6, 4, 15, 7, 9)
    expect(strftime(d, '%d %b %Y')).toBe('04 Jul 2026')
    expect(strftime(d, '%A %B %e %y %j %H:%M:%S %I%p %F %%')).toBe('Saturday July  4 26 185 15:07:09 03PM 2026-07-04 %')
    expect(todayChatDate(d)).toBe('2026-07-04')
    expect(() => renderPrompt(tok('llama-3.2-1b-instruct'), 'Hi', { chatDate: '5 Mar' })).toThrow(/YYYY-MM-DD/)
  })

  it('a chat_template.jinja beside tokenizer_config.json wins, as transformers loads it', async () => {
    const dir = tempDir('dpo-jinja-')
    const src = familyModel('qwen2.5-0.5b-instruct')
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(path.join(src, f), path.join(dir, f))
    writeFileSync(
      path.join(dir, 'chat_template.jinja'),
      '{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}',
    )
    const t = await TextTokenizer.fromDir(dir)
    expect(renderPrompt(t, 'Hi', { system: '' }).text).toBe('[user]Hi')
  })
})

describe('one source of truth for "supported": the panel runs the loader\'s checks', () => {
  it('every twin is supported, full precision and bitsandbytes 4-bit', async () => {
    for (const f of FAMILIES) {
      const m = await inspectModel(familyModel(f))
      expect(m.supported, `${f}: ${m.note}`).toBe(true)
      expect(m.note).toBe('')
    }
    const bnb = await inspectModel(familyModel('qwen2.5-0.5b-instruct', { bnb4bit: true }))
    expect(bnb).toMatchObject({ supported: true, prequantized: true })
    expect(bnb.params).toBeGreaterThan(151936 * 56) // the engine's count, biases and all
  })

  it("says why a folder will not load, in the loader's words", async () => {
    const relabel = (arch: string, extra: Record<string, unknown> = {}) => {
      const dir = tempDir('dpo-relabel-')
      const src = familyModel('qwen3-0.6b')
      mkdirSync(dir, { recursive: true })
      for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
        copyFileSync(path.join(src, f), path.join(dir, f))
      const cfg = JSON.parse(readFileSync(path.join(src, 'config.json'), 'utf8')) as Record<string, unknown>
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: [arch], ...extra }))
      return dir
    }
    // A Qwen3 checkpoint labelled Llama would drop its q/k norms: the header walk refuses it, as loading does.
    const asLlama = await inspectModel(relabel('LlamaForCausalLM', { model_type: 'llama' }))
    expect(asLlama.supported).toBe(false)
    expect(asLlama.note).toMatch(/self_attn\.[qk]_norm\.weight .* is not part of a LlamaForCausalLM model/)
    expect((await inspectModel(relabel('Gemma2ForCausalLM'))).note).toMatch(/Gemma 2 is not supported/)
    const breeze2 = await inspectModel(
      relabel('InternVLChatModel', { llm_config: { architectures: ['LlamaForCausalLM'] } }),
    )
    expect(breeze2.note).toMatch(/multimodal model.*LlamaForCausalLM, config\.json 'llm_config'/)
    expect(
      (await inspectModel(relabel('Qwen3ForCausalLM', { rope_scaling: { rope_type: 'longrope', factor: 4 } }))).note,
    ).toMatch(/rope_scaling type 'longrope' is not supported/)
  })
})
