// Chat template rendering (docs/reference/chat-template.md#rendering) with the real Breeze, Mistral-Instruct and
// MiniMind templates, plain prompts for stories260K (no template), and prompt ids with exactly one BOS.
import { readFile } from 'node:fs/promises'
import { beforeAll, describe, expect, it } from 'vitest'
import { StudioError } from '../../src-main/services/errors'
import {
  DEFAULT_SYSTEM_MESSAGE,
  pickChatTemplate,
  promptIds,
  renderPrompt,
  type ChatTemplateHost,
} from '../../src-main/services/tokenizer/chatTemplate'
import { answerMarkerFor, answerText, INST_ANSWER_MARKER } from '../../src-main/services/tokenizer/answerText'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../helpers/sharedPath'

/**
 * Breeze-7B-Instruct-v0_1's chat_template, verbatim from docs/reference/chat-template.md#the-breeze-template (the model
 * of the HW6 run).
 */
const BREEZE_V0_1_TEMPLATE =
  "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'].strip() %}{% else %}{% set loop_messages = messages %}{% set system_message = 'You are a helpful AI assistant built by MediaTek Research. The user you are helping speaks Traditional Chinese and comes from Taiwan.' %}{% endif %}{{ bos_token }}{{ system_message }}   {% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/... or system/user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST] ' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

interface TemplateFileEntry {
  bos_token?: string
  eos_token?: string
  chat_template: string
}

let templatesFile: Record<string, TemplateFileEntry | string>
let hw6Questions: string[]

beforeAll(async () => {
  templatesFile = JSON.parse(
    await readFile(sharedPath('tokenizers', 'breeze-7b-instruct', 'chat_templates.json'), 'utf8'),
  ) as typeof templatesFile
  const prompts = JSON.parse(await readFile(sharedPath('datasets', 'genai-hw6', 'test_prompt.json'), 'utf8')) as {
    prompt: string
  }[]
  hw6Questions = prompts.map((p) => p.prompt)
})

function fileTemplate(keyStart: string): TemplateFileEntry {
  const entry = Object.entries(templatesFile).find(([k]) => k.startsWith(keyStart))
  if (!entry || typeof entry[1] === 'string') throw new Error(`no ${keyStart} entry in chat_templates.json`)
  return entry[1]
}

const host = (template: unknown, bos = '<s>', eos = '</s>'): ChatTemplateHost => ({
  chatTemplateSource: template,
  bosToken: bos,
  eosToken: eos,
})

describe('renderPrompt: Breeze', () => {
  it('renders the HW6 prompt exactly as docs/reference/chat-template.md#rendering (v0_1 template)', () => {
    expect(DEFAULT_SYSTEM_MESSAGE).toBe('回覆請少於20字')
    for (const q of hw6Questions) {
      const r = renderPrompt(host(BREEZE_V0_1_TEMPLATE), q)
      expect(r.mode).toBe('template')
      expect(r.text).toBe('<s>回覆請少於20字   [INST] ' + q + ' [/INST] ')
    }
  })

  it('keeps the user text verbatim and strips only the system text', () => {
    const r = renderPrompt(host(BREEZE_V0_1_TEMPLATE), ' q ', { system: '  sys  ' })
    expect(r.text).toBe('<s>sys   [INST]  q  [/INST] ')
  })

  it('renders the template in shared chat_templates.json (its Breeze-7B-Instruct-v1_0 entry) with its own spacing', () => {
    // The shared file holds the v1_0 template ("{{ bos_token }} {{ system_message }} " + "' [INST] '"), which
    // differs from the v0_1 template of docs/reference/chat-template.md#the-breeze-template by where the spaces go.
    const breeze = fileTemplate('MediaTek-Research/Breeze-7B-Instruct')
    const q = hw6Questions[0]!
    const r = renderPrompt(host(breeze.chat_template, breeze.bos_token, breeze.eos_token), q)
    expect(r.text).toBe('<s> 回覆請少於20字  [INST] ' + q + ' [/INST] ')
  })

  it('without a system message, the template uses its own default', () => {
    const r = renderPrompt(host(BREEZE_V0_1_TEMPLATE), 'q', { system: null })
    expect(r.text.startsWith('<s>You are a helpful AI assistant built by MediaTek Research.')).toBe(true)
    expect(r.text.endsWith('   [INST] q [/INST] ')).toBe(true)
  })
})

describe('renderPrompt: other templates', () => {
  it('retries a template that rejects the system role with the system text merged into the user turn', () => {
    const mistral = fileTemplate('TheBloke/Mistral-7B-Instruct')
    const r = renderPrompt(host(mistral.chat_template), '你好嗎？')
    expect(r.mode).toBe('template-merged-system')
    expect(r.text).toBe('<s>[INST] 回覆請少於20字\n\n你好嗎？ [/INST]')
  })

  it('renders MiniMind ChatML with the system message and the generation prompt', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'minimind'))
    const q = hw6Questions[1]!
    const r = renderPrompt(tok, q)
    expect(r.mode).toBe('template')
    expect(r.text).toBe(
      `<|im_start|>system\n回覆請少於20字<|im_end|>\n<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`,
    )
    const ids = promptIds(tok, r.text)
    expect(ids[0]).toBe(1) // <|im_start|>, no extra BOS
    expect(ids.filter((id) => id === 1)).toHaveLength(3)
  })

  it('gives plain text after BOS for a model without a template (stories260K)', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('models', 'stories260K'))
    const r = renderPrompt(tok, 'Once upon a time')
    expect(r).toEqual({ text: '<s>Once upon a time', mode: 'plain' })
    expect(promptIds(tok, r.text)).toEqual([1, 403, 407, 261, 378])
  })

  it('passes the question verbatim with noTemplate', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('models', 'stories260K'))
    const r = renderPrompt(host(BREEZE_V0_1_TEMPLATE), 'Once upon a time', { noTemplate: true })
    expect(r).toEqual({ text: 'Once upon a time', mode: 'verbatim' })
    // No BOS text in it, so the tokenizer's add_bos_token decides.
    expect(promptIds(tok, r.text)).toEqual([1, 403, 407, 261, 378])
  })

  it('picks the "default" entry of the array form', () => {
    const source = [
      { name: 'tool_use', template: 'TOOLS {{ messages[1].content }}' },
      { name: 'default', template: 'DEFAULT {{ messages[1].content }}' },
    ]
    expect(pickChatTemplate(source)).toBe('DEFAULT {{ messages[1].content }}')
    expect(pickChatTemplate(source, 'tool_use')).toBe('TOOLS {{ messages[1].content }}')
    expect(pickChatTemplate([{ name: 'x', template: 'y' }])).toBeNull()
    expect(pickChatTemplate(null)).toBeNull()
    expect(renderPrompt(host(source), 'q').text).toBe('DEFAULT q')
  })

  it('reports a template that cannot be parsed or rendered as E_BAD_MODEL', () => {
    const parse = (() => {
      try {
        renderPrompt(host('{% if %}'), 'q')
      } catch (e) {
        return e
      }
    })()
    expect(parse).toBeInstanceOf(StudioError)
    expect((parse as StudioError).code).toBe('E_BAD_MODEL')
    expect(() => renderPrompt(host("{{ raise_exception('nope') }}"), 'q')).toThrow(
      /chat_template failed to render the prompt: nope/,
    )
  })
})

describe('promptIds with the Mistral tokenizer (Breeze base vocabulary)', () => {
  it('starts the Breeze prompt with exactly one BOS (docs/reference/chat-template.md: no double BOS)', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'mistral-v0.1'))
    const q = hw6Questions[0]!
    const text = renderPrompt(host(BREEZE_V0_1_TEMPLATE), q).text
    const ids = promptIds(tok, text)
    expect(ids[0]).toBe(1)
    expect(ids[1]).not.toBe(1)
    expect(ids.filter((id) => id === 1)).toHaveLength(1)
    // The prompt ends with the lone "▁" of "[/INST] ".
    expect(ids.slice(-5)).toEqual([733, 28748, 16289, 28793, 28705])
    // The notebook's tokenizer(prompt) would have given [1, 1, ...].
    expect(tok.encode(text).slice(0, 2)).toEqual([1, 1])
  })
})

describe('answerText (docs/reference/generation.md#answer-text)', () => {
  it('splits an [INST] prompt + generation on the first "[/INST] " like the notebook', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'mistral-v0.1'))
    const breeze = { decode: tok.decode.bind(tok), chatTemplateSource: BREEZE_V0_1_TEMPLATE }
    const q = hw6Questions[0]!
    const ids = promptIds(tok, renderPrompt(host(BREEZE_V0_1_TEMPLATE), q).text)
    const answer = '真人化能讓更多人認識漫畫。'
    const generated = [...tok.encode(answer, { addSpecialTokens: false }).filter((id) => id !== 28705), 2]
    // Python: batch_decode(out, skip_special_tokens=True)[0].split('[/INST] ')[1]
    const decoded = tok.decode([...ids, ...generated], { skipSpecialTokens: true })
    expect(decoded).toBe(`回覆請少於20字   [INST] ${q} [/INST] ${answer}`)
    expect(answerText(breeze, ids, generated)).toBe(answer)
    // The model writing "[/INST] " again ends the answer there, as split(...)[1] does.
    const twice = [...generated.slice(0, -1), ...tok.encode(' [/INST] more', { addSpecialTokens: false })]
    // (' [/INST] more' encodes as "▁▁[/INST]▁more": the legacy "▁" prefix plus the space, hence two spaces.)
    expect(answerText(breeze, ids, twice)).toBe(`${answer}  `)
    expect(answerMarkerFor(BREEZE_V0_1_TEMPLATE)).toBe(INST_ANSWER_MARKER)
  })

  it('decodes only the generated ids for other templates or with marker null', async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'minimind'))
    const ids = promptIds(tok, renderPrompt(tok, 'q').text)
    const generated = [...tok.encode('你好 world', { addSpecialTokens: false }), tok.eosId!]
    expect(answerText(tok, ids, generated)).toBe('你好 world')
    const mistral = await TextTokenizer.fromDir(sharedPath('tokenizers', 'mistral-v0.1'))
    const gen = mistral.encode('Hello there', { addSpecialTokens: false })
    expect(
      answerText({ decode: mistral.decode.bind(mistral), chatTemplateSource: BREEZE_V0_1_TEMPLATE }, [1], gen, {
        marker: null,
      }),
    ).toBe('Hello there')
    // [INST] template but no marker in the decoded text: falls back to the generated ids.
    expect(
      answerText({ decode: mistral.decode.bind(mistral), chatTemplateSource: BREEZE_V0_1_TEMPLATE }, [1], gen),
    ).toBe('Hello there')
  })
})
