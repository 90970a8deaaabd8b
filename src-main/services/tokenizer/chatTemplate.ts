// Chat templates: wrap a plain question in the model's chat_template (Jinja, rendered with @huggingface/jinja) with
// the system message, as the HW6 notebook's data_formulate does (docs/reference/chat-template.md#the-notebooks-prompt),
// and turn the result into prompt ids. Rendering passes what transformers' apply_chat_template passes
// (docs/model-families.md): the special tokens, tools = documents = None, strftime_now (on the run's recorded date, not
// the clock) and, when asked, enable_thinking.
import { Environment, Interpreter, Template } from '@huggingface/jinja'
import { StudioError, errorMessage } from '../errors'
import { cleanText } from '../messageText'
import { strftime } from './strftime'
import type { TextTokenizer } from './textTokenizer'
import { DEFAULT_SYSTEM_MESSAGE, type ChatMessage } from '../../../src-shared/prompts/chatMessage'

// Defined with the API contract (the parameter schema defaults to it); rendering is where main uses them.
export { DEFAULT_SYSTEM_MESSAGE, type ChatMessage }

/** What rendering needs from a tokenizer; TextTokenizer has all of it, tests may pass a plain object. */
export interface ChatTemplateHost {
  /** tokenizer_config.json's chat_template: a string, or an array of {name, template}. */
  chatTemplateSource: unknown
  bosToken: string | null
  eosToken: string | null
  padToken?: string | null
  unkToken?: string | null
}

/**
 * How the prompt was made: the template as is; the template with the system text merged into the user turn
 * (it rejected a system role); plain text after BOS (no template); or the question verbatim (noTemplate).
 */
export type PromptMode = 'template' | 'template-merged-system' | 'plain' | 'verbatim'

export interface RenderedPrompt {
  text: string
  mode: PromptMode
}

export interface RenderPromptOptions {
  /**
   * System message. undefined -> DEFAULT_SYSTEM_MESSAGE; null or '' -> no system message at all.
   * Ignored in plain and verbatim modes (a model without a template has nowhere to put it).
   */
  system?: string | null | undefined
  /** Pass the question through verbatim (CLI --no-template). */
  noTemplate?: boolean | undefined
  /** Which named template to use when chat_template is an array; default 'default'. */
  templateName?: string | undefined
  /** The day strftime_now renders, YYYY-MM-DD (default: today, local time, as transformers' datetime.now()). */
  chatDate?: string | undefined
  /** enable_thinking (Qwen3); undefined leaves it undefined, i.e. the template's own default. */
  enableThinking?: boolean | undefined
}

export interface RenderMessagesOptions {
  /** Default true: prompts for generation and DPO end where the assistant's answer starts. */
  addGenerationPrompt?: boolean | undefined
  templateName?: string | undefined
  chatDate?: string | undefined
  enableThinking?: boolean | undefined
}

/** Today's local date as YYYY-MM-DD: the chat date a run records when none is given. */
export function todayChatDate(now: Date = new Date()): string {
  const p2 = (n: number) => String(n).padStart(2, '0')
  return `${now.getFullYear()}-${p2(now.getMonth() + 1)}-${p2(now.getDate())}`
}

/** A YYYY-MM-DD chat date as local midnight (what strftime_now formats). */
function chatDateValue(chatDate: string | undefined): Date {
  if (chatDate === undefined) return new Date()
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(chatDate)
  if (!m) throw new StudioError('E_BAD_INPUT', `chat date must be YYYY-MM-DD, got ${JSON.stringify(chatDate)}`)
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]))
}

/**
 * Python's range(), as the library's own global, with the limit of Jinja2's sandbox, in which transformers renders
 * chat templates: it refuses a range() of more than 100,000 items (jinja2/sandbox.py MAX_RANGE). Without it a
 * template from a downloaded tokenizer_config.json could ask for range(10**9) and stall the app building a
 * billion-element list (docs/fuzzing.md).
 */
const MAX_RANGE = 100_000
function pyRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start]
  if (step === 0) throw new Error('range() step must not be zero')
  const count = Math.max(0, Math.ceil((stop - start) / step))
  if (!(count <= MAX_RANGE)) throw new Error(`range() of ${count} items: the sandbox allows at most ${MAX_RANGE}`)
  return Array.from({ length: count }, (_, i) => start + i * step)
}

/**
 * Renders a compiled template. Template.render would install the library's strftime_now (the clock, in the host's
 * locale) and refuses a second definition, so the globals are set here: the library's own (true/false/none,
 * raise_exception, range) and strftime_now on the given date with C-locale names, as Python's strftime writes them.
 */
function renderWith(template: Template, variables: Record<string, unknown>, date: Date): string {
  const env = new Environment()
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception: (message: unknown) => {
      throw new Error(String(message))
    },
    range: pyRange,
    strftime_now: (format: unknown) => strftime(date, String(format)),
  }
  for (const [k, v] of Object.entries({ ...globals, ...variables })) env.set(k, v)
  return new Interpreter(env).run(template.parsed).value as string
}

/**
 * The template text from chat_template's two published forms: a string, or a list of {name, template}
 * (transformers picks the one named 'default' unless told otherwise). Null when the model has none.
 */
export function pickChatTemplate(source: unknown, name = 'default'): string | null {
  if (typeof source === 'string') return source.length > 0 ? source : null
  if (Array.isArray(source)) {
    for (const entry of source) {
      if (entry && typeof entry === 'object' && (entry as { name?: unknown }).name === name) {
        const t = (entry as { template?: unknown }).template
        if (typeof t === 'string') return t
      }
    }
  }
  return null
}

const compiled = new Map<string, Template>()

function compile(template: string): Template {
  let t = compiled.get(template)
  if (!t) {
    try {
      t = new Template(template)
    } catch (e) {
      throw new StudioError(
        'E_BAD_MODEL',
        `the model's chat_template cannot be parsed: ${cleanText(errorMessage(e))}`,
        { cause: e },
      )
    }
    compiled.set(template, t)
  }
  return t
}

/**
 * Renders a message list with the model's template, as `apply_chat_template(messages, tokenize=False)` does: the
 * special tokens are passed as text variables, and @huggingface/jinja applies HF's trim_blocks + lstrip_blocks.
 * Template errors (including its own raise_exception) are thrown as they are; renderPrompt handles them.
 */
export function renderMessages(
  host: ChatTemplateHost,
  messages: readonly ChatMessage[],
  options: RenderMessagesOptions = {},
): string {
  const template = pickChatTemplate(host.chatTemplateSource, options.templateName)
  if (template === null) throw new StudioError('E_BAD_MODEL', 'the model has no chat_template')
  const variables: Record<string, unknown> = {
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    add_generation_prompt: options.addGenerationPrompt ?? true,
    tools: null,
    documents: null,
    bos_token: host.bosToken ?? '',
    eos_token: host.eosToken ?? '',
    pad_token: host.padToken ?? '',
    unk_token: host.unkToken ?? '',
  }
  if (options.enableThinking !== undefined) variables.enable_thinking = options.enableThinking
  return renderWith(compile(template), variables, chatDateValue(options.chatDate))
}

/**
 * The prompt text for one question (docs/reference/chat-template.md#rendering): the chat template over [system, user]
 * with add_generation_prompt; for Breeze-7B-Instruct-v0_1 that is `"<s>回覆請少於20字   [INST] " + q + " [/INST] "`.
 * - Templates that reject a system role (Mistral-Instruct's raise_exception on roles that do not alternate) are
 *   retried once with the system text put in front of the user text, separated by a blank line, which is how
 *   Mistral's own docs place a system prompt. If the retry fails too, the first error is reported.
 * - A model without a template gets plain text after BOS, `${bos}${question}`
 *   (docs/architecture.md#datasets-and-prompts); the system message is dropped there.
 * - noTemplate passes the question verbatim.
 */
export function renderPrompt(
  host: ChatTemplateHost,
  question: string,
  options: RenderPromptOptions = {},
): RenderedPrompt {
  if (options.noTemplate) return { text: question, mode: 'verbatim' }
  const template = pickChatTemplate(host.chatTemplateSource, options.templateName)
  if (template === null) return { text: `${host.bosToken ?? ''}${question}`, mode: 'plain' }

  const system = options.system === undefined ? DEFAULT_SYSTEM_MESSAGE : options.system
  const renderOpts = {
    templateName: options.templateName,
    addGenerationPrompt: true,
    chatDate: options.chatDate,
    enableThinking: options.enableThinking,
  }
  if (!system) {
    return {
      text: renderOrThrow(() => renderMessages(host, [{ role: 'user', content: question }], renderOpts)),
      mode: 'template',
    }
  }
  try {
    const text = renderMessages(
      host,
      [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ],
      renderOpts,
    )
    return { text, mode: 'template' }
  } catch (first) {
    if (first instanceof StudioError) throw first // unparsable template: retrying cannot help
    try {
      const text = renderMessages(host, [{ role: 'user', content: `${system}\n\n${question}` }], renderOpts)
      return { text, mode: 'template-merged-system' }
    } catch {
      throw templateError(first)
    }
  }
}

function renderOrThrow(render: () => string): string {
  try {
    return render()
  } catch (e) {
    if (e instanceof StudioError) throw e
    throw templateError(e)
  }
}

function templateError(e: unknown): StudioError {
  return new StudioError(
    'E_BAD_MODEL',
    `the model's chat_template failed to render the prompt: ${cleanText(errorMessage(e))}`,
    { cause: e },
  )
}

/**
 * Prompt ids for generation, by the one BOS rule of training, log-probs and generation (docs/model-families.md):
 * the text is tokenized without special tokens, and the tokenizer's BOS is put in front unless the ids already start
 * with it; a tokenizer without a BOS token (Qwen) gets none, whatever config.json's bos_token_id says. That is TRL's
 * tokenize_row step 4 (docs/reference/dpo-data.md#bos-and-eos), so generation sees the prompt training saw. The
 * notebook's `tokenizer(prompt)` adds a second BOS to templates that write one ([1, 1, ...],
 * docs/reference/chat-template.md#bos-in-generation-prompts); we do not reproduce that. EOS is never added to a prompt,
 * even with add_eos_token: it would tell the model the text is over.
 */
export function promptIds(tokenizer: Pick<TextTokenizer, 'encode' | 'bosId'>, renderedText: string): number[] {
  const ids = tokenizer.encode(renderedText, { addSpecialTokens: false })
  if (tokenizer.bosId !== null && ids[0] !== tokenizer.bosId) ids.unshift(tokenizer.bosId)
  return ids
}
