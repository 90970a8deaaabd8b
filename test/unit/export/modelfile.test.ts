// The Ollama TEMPLATE derived from each real chat template (docs/exports.md, "Modelfile"): filled in by Ollama's
// legacy variables, it must give exactly the prompt our engine renders (BOS text aside, which llama.cpp adds itself),
// with and without a system message, and write the template's end-of-turn text after the answer.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { modelfileText, ollamaTemplate } from '../../../src-main/services/export/modelfile'
import { renderPrompt } from '../../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../../src-main/services/tokenizer/textTokenizer'
import { sharedPath } from '../../helpers/sharedPath'

/** Ollama's legacy template subset: {{ .System }}, {{ .Prompt }}, {{ .Response }} and {{ if .System }}..{{ else }}..{{ end }}. */
function fill(template: string, vars: { System: string; Prompt: string; Response: string }): string {
  let t = template
  const cond = /\{\{ if \.System \}\}((?:(?!\{\{ if )[\s\S])*?)(?:\{\{ else \}\}([\s\S]*?))?\{\{ end \}\}/
  for (let m = cond.exec(t); m; m = cond.exec(t)) t = t.replace(m[0], vars.System ? m[1]! : (m[2] ?? ''))
  return t
    .replaceAll('{{ .System }}', vars.System)
    .replaceAll('{{ .Prompt }}', vars.Prompt)
    .replaceAll('{{ .Response }}', vars.Response)
}

const TOKENIZERS = ['qwen2.5', 'qwen3', 'llama-3.1', 'mistral-v0.1', 'minimind']
const QUESTION = '真人化是否能改善日本漫畫的全球可及性？'

describe('Modelfile TEMPLATE from the chat template', () => {
  it.each(TOKENIZERS)('%s: the template filled in is our prompt, with and without a system message', async (name) => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', name))
    const t = ollamaTemplate(tok)
    const strip = (s: string) => (tok.bosToken && s.startsWith(tok.bosToken) ? s.slice(tok.bosToken.length) : s)
    for (const system of ['回覆請少於20字', '']) {
      const ours = strip(renderPrompt(tok, QUESTION, { system }).text)
      const filled = fill(t.template, { System: system, Prompt: QUESTION, Response: '' })
      expect(filled.startsWith(ours), `${name}, system "${system}":\n${filled}\n---\n${ours}`).toBe(true)
    }
    // After the answer comes the template's end of turn (for Qwen "<|im_end|>\n", for Llama 3 "<|eot_id|>").
    const answered = fill(t.template, { System: 'S', Prompt: 'Q', Response: 'ANSWER' })
    expect(answered).toContain('ANSWER')
  })

  it('Breeze-7B-Instruct v1_0 (its published template): the system text sits where the template puts it', () => {
    const file = JSON.parse(
      readFileSync(sharedPath('tokenizers', 'breeze-7b-instruct', 'chat_templates.json'), 'utf8'),
    ) as Record<string, { chat_template: string } | string>
    const entry = Object.entries(file).find(([k]) => k.startsWith('MediaTek-Research/Breeze-7B-Instruct-v1_0'))![1] as {
      chat_template: string
    }
    const host = { chatTemplateSource: entry.chat_template, bosToken: '<s>', eosToken: '</s>' }
    const t = ollamaTemplate(host)
    expect(t.hasSystem).toBe(true)
    expect(fill(t.template, { System: '回覆請少於20字', Prompt: QUESTION, Response: '' })).toBe(
      renderPrompt(host, QUESTION, { system: '回覆請少於20字' }).text.slice(3),
    )
  })

  it("writes FROM, the TEMPLATE, one stop per end token and the run's SYSTEM", async () => {
    const tok = await TextTokenizer.fromDir(sharedPath('tokenizers', 'qwen2.5'))
    const text = modelfileText({
      from: 'm-Q4_0.gguf',
      host: tok,
      system: '回覆請少於20字',
      stops: ['<|im_end|>', '<|endoftext|>', '<|im_end|>'],
      alternatives: ['m-F16.gguf'],
    })
    expect(text).toContain('FROM ./m-Q4_0.gguf\n')
    expect(text.match(/^PARAMETER stop /gm)!.length).toBe(2)
    expect(text).toContain('SYSTEM """回覆請少於20字"""')
    expect(text).toContain('<|im_start|>assistant\n{{ end }}{{ .Response }}<|im_end|>')
  })
})
