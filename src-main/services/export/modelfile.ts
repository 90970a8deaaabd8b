// An Ollama Modelfile for an exported GGUF (docs/exports.md): FROM the file, a TEMPLATE derived from the model's chat
// template, PARAMETER stop for its end-of-turn tokens, and the run's system message as SYSTEM.
// The template is found by rendering the Jinja chat template with marker strings for the system text, the question
// and the answer, then putting Ollama's {{ .System }}, {{ .Prompt }} and {{ .Response }} where the markers landed.
import { pickChatTemplate, renderMessages, renderPrompt, type ChatTemplateHost } from '../tokenizer/chatTemplate'

const SYS = '\u0001SYSTEM\u0001'
const USER = '\u0001PROMPT\u0001'
const RESP = '\u0001RESPONSE\u0001'

export interface ModelfileInput {
  /** The GGUF file, relative to the Modelfile. */
  from: string
  host: ChatTemplateHost
  /** The run's system message ('' for none). */
  system: string
  /** Token texts that end a turn (the tokenizer's EOS ids as text). */
  stops: string[]
  /** Other GGUF files beside it, named in a comment. */
  alternatives?: string[]
}

export interface DerivedTemplate {
  /** Ollama (Go text/template) source. */
  template: string
  /** Whether the template has a place for a system message. */
  hasSystem: boolean
}

/** The chat template as an Ollama TEMPLATE; BOS text is left out (llama.cpp adds BOS itself when the model wants it). */
export function ollamaTemplate(host: ChatTemplateHost): DerivedTemplate {
  if (pickChatTemplate(host.chatTemplateSource) === null)
    return { template: '{{ .Prompt }}{{ .Response }}', hasSystem: false }
  const strip = (s: string) => (host.bosToken && s.startsWith(host.bosToken) ? s.slice(host.bosToken.length) : s)
  const go = (s: string) => strip(s).replaceAll(SYS, '{{ .System }}').replaceAll(USER, '{{ .Prompt }}')
  const withSystem = renderPrompt(host, USER, { system: SYS })
  const without = strip(renderPrompt(host, USER, { system: null }).text).replaceAll(USER, '{{ .Prompt }}')
  const answer = answerSuffix(host, withSystem.mode === 'template' ? [{ role: 'system', content: SYS }] : [])
  let prompt: string
  let hasSystem = true
  if (withSystem.mode === 'template' && withSystem.text.includes(SYS)) {
    prompt = `{{ if .System }}${go(withSystem.text)}{{ else }}${without}{{ end }}`
  } else if (withSystem.mode === 'template-merged-system') {
    // The template has no system role: the run put the system text before the question, after a blank line.
    prompt = without.replace('{{ .Prompt }}', '{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}')
  } else {
    prompt = without
    hasSystem = false
  }
  return { template: `${prompt}{{ .Response }}${answer}`, hasSystem }
}

/** What the template writes after an assistant answer (end-of-turn tokens), or '' when it cannot be told. */
function answerSuffix(host: ChatTemplateHost, system: Array<{ role: string; content: string }>): string {
  try {
    const full = renderMessages(
      host,
      [...system, { role: 'user', content: USER }, { role: 'assistant', content: RESP }],
      { addGenerationPrompt: false },
    )
    const at = full.indexOf(RESP)
    return at >= 0 ? full.slice(at + RESP.length) : ''
  } catch {
    return ''
  }
}

/** Quotes a Modelfile value ("""...""" unless it holds three quotes itself). */
function quote(s: string): string {
  return s.includes('"""') ? JSON.stringify(s) : `"""${s}"""`
}

export function modelfileText(input: ModelfileInput): string {
  const t = ollamaTemplate(input.host)
  const lines = [
    '# Ollama Modelfile written by DPO Studio: `ollama create NAME -f Modelfile`, then `ollama run NAME`.',
    ...(input.alternatives?.length
      ? [`# Other quantizations beside it: ${input.alternatives.join(', ')} (change FROM to use one).`]
      : []),
    `FROM ./${input.from}`,
    `TEMPLATE ${quote(t.template)}`,
    ...[...new Set(input.stops)].filter((s) => s !== '').map((s) => `PARAMETER stop ${JSON.stringify(s)}`),
    '# Greedy decoding, as the answers DPO Studio compared; raise it for varied answers.',
    'PARAMETER temperature 0',
  ]
  if (t.hasSystem && input.system) lines.push(`SYSTEM ${quote(input.system)}`)
  return lines.join('\n') + '\n'
}
