// Chat templates: wrap a plain question in the model's chat_template (Jinja, rendered with @huggingface/jinja) with
// the system message, as the HW6 notebook's data_formulate does (spec §6), and turn the result into prompt ids.
import { Template } from '@huggingface/jinja';
import { StudioError, errorMessage } from '../errors';
import { cleanText } from '../messageText';
import type { TextTokenizer } from './textTokenizer';

/** The notebook's system message (spec §6, architecture.md §3). */
export const DEFAULT_SYSTEM_MESSAGE = '回覆請少於20字';

export interface ChatMessage {
  role: string;
  content: string;
}

/** What rendering needs from a tokenizer; TextTokenizer has all of it, tests may pass a plain object. */
export interface ChatTemplateHost {
  /** tokenizer_config.json's chat_template: a string, or an array of {name, template}. */
  chatTemplateSource: unknown;
  bosToken: string | null;
  eosToken: string | null;
  padToken?: string | null;
  unkToken?: string | null;
}

/**
 * How the prompt was made: the template as is; the template with the system text merged into the user turn
 * (it rejected a system role); plain text after BOS (no template); or the question verbatim (noTemplate).
 */
export type PromptMode = 'template' | 'template-merged-system' | 'plain' | 'verbatim';

export interface RenderedPrompt {
  text: string;
  mode: PromptMode;
}

export interface RenderPromptOptions {
  /**
   * System message. undefined -> DEFAULT_SYSTEM_MESSAGE; null or '' -> no system message at all.
   * Ignored in plain and verbatim modes (a model without a template has nowhere to put it).
   */
  system?: string | null | undefined;
  /** Pass the question through verbatim (CLI --no-template). */
  noTemplate?: boolean | undefined;
  /** Which named template to use when chat_template is an array; default 'default'. */
  templateName?: string | undefined;
}

export interface RenderMessagesOptions {
  /** Default true: prompts for generation and DPO end where the assistant's answer starts. */
  addGenerationPrompt?: boolean | undefined;
  templateName?: string | undefined;
}

/**
 * The template text from chat_template's two published forms: a string, or a list of {name, template}
 * (transformers picks the one named 'default' unless told otherwise). Null when the model has none.
 */
export function pickChatTemplate(source: unknown, name = 'default'): string | null {
  if (typeof source === 'string') return source.length > 0 ? source : null;
  if (Array.isArray(source)) {
    for (const entry of source) {
      if (entry && typeof entry === 'object' && (entry as { name?: unknown }).name === name) {
        const t = (entry as { template?: unknown }).template;
        if (typeof t === 'string') return t;
      }
    }
  }
  return null;
}

const compiled = new Map<string, Template>();

/**
 * Jinja2's sandbox, in which transformers renders chat templates, refuses a range() of more than 100,000 items
 * (jinja2/sandbox.py MAX_RANGE); @huggingface/jinja has no such limit, so a template from a downloaded
 * tokenizer_config.json could ask for range(10**9) and stall the app building a billion-element list
 * (docs/fuzzing.md). Ours has the sandbox's limit.
 */
const MAX_RANGE = 100_000;
function sandboxRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (!(count <= MAX_RANGE)) throw new Error(`range() of ${count} items: the sandbox allows at most ${MAX_RANGE}`);
  return Array.from({ length: count }, (_, i) => start + i * step);
}
const SANDBOX_RANGE = '__dpo_sandbox_range';

/** Points every range in a parsed template at sandboxRange (the library's own range cannot be replaced). */
function useSandboxRange(node: unknown, isPropertyName = false): void {
  if (!node || typeof node !== 'object') return;
  if (Array.isArray(node)) return node.forEach((n) => useSandboxRange(n));
  const n = node as { type?: unknown; value?: unknown; computed?: unknown };
  if (n.type === 'Identifier' && n.value === 'range' && !isPropertyName) n.value = SANDBOX_RANGE;
  for (const [key, child] of Object.entries(n)) useSandboxRange(child, n.type === 'MemberExpression' && key === 'property' && n.computed === false);
}

function compile(template: string): Template {
  let t = compiled.get(template);
  if (!t) {
    try {
      t = new Template(template);
      useSandboxRange(t.parsed);
    } catch (e) {
      throw new StudioError('E_BAD_MODEL', `the model's chat_template cannot be parsed: ${cleanText(errorMessage(e))}`, { cause: e });
    }
    compiled.set(template, t);
  }
  return t;
}

/**
 * Renders a message list with the model's template, as `apply_chat_template(messages, tokenize=False)` does: the
 * special tokens are passed as text variables, and @huggingface/jinja applies HF's trim_blocks + lstrip_blocks.
 * Template errors (including its own raise_exception) are thrown as they are; renderPrompt handles them.
 */
export function renderMessages(host: ChatTemplateHost, messages: readonly ChatMessage[], options: RenderMessagesOptions = {}): string {
  const template = pickChatTemplate(host.chatTemplateSource, options.templateName);
  if (template === null) throw new StudioError('E_BAD_MODEL', 'the model has no chat_template');
  return compile(template).render({
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    add_generation_prompt: options.addGenerationPrompt ?? true,
    bos_token: host.bosToken ?? '',
    eos_token: host.eosToken ?? '',
    pad_token: host.padToken ?? '',
    unk_token: host.unkToken ?? '',
    [SANDBOX_RANGE]: sandboxRange,
  });
}

/**
 * The prompt text for one question (spec §6): the chat template over [system, user] with add_generation_prompt;
 * for Breeze-7B-Instruct-v0_1 that is `"<s>回覆請少於20字   [INST] " + q + " [/INST] "`.
 * - Templates that reject a system role (Mistral-Instruct's raise_exception on roles that do not alternate) are
 *   retried once with the system text put in front of the user text, separated by a blank line, which is how
 *   Mistral's own docs place a system prompt. If the retry fails too, the first error is reported.
 * - A model without a template gets plain text after BOS, `${bos}${question}` (architecture.md §3); the system
 *   message is dropped there.
 * - noTemplate passes the question verbatim.
 */
export function renderPrompt(host: ChatTemplateHost, question: string, options: RenderPromptOptions = {}): RenderedPrompt {
  if (options.noTemplate) return { text: question, mode: 'verbatim' };
  const template = pickChatTemplate(host.chatTemplateSource, options.templateName);
  if (template === null) return { text: `${host.bosToken ?? ''}${question}`, mode: 'plain' };

  const system = options.system === undefined ? DEFAULT_SYSTEM_MESSAGE : options.system;
  const renderOpts = { templateName: options.templateName, addGenerationPrompt: true };
  if (!system) {
    return { text: renderOrThrow(() => renderMessages(host, [{ role: 'user', content: question }], renderOpts)), mode: 'template' };
  }
  try {
    const text = renderMessages(host, [{ role: 'system', content: system }, { role: 'user', content: question }], renderOpts);
    return { text, mode: 'template' };
  } catch (first) {
    if (first instanceof StudioError) throw first; // unparsable template: retrying cannot help
    try {
      const text = renderMessages(host, [{ role: 'user', content: `${system}\n\n${question}` }], renderOpts);
      return { text, mode: 'template-merged-system' };
    } catch {
      throw templateError(first);
    }
  }
}

function renderOrThrow(render: () => string): string {
  try {
    return render();
  } catch (e) {
    if (e instanceof StudioError) throw e;
    throw templateError(e);
  }
}

function templateError(e: unknown): StudioError {
  return new StudioError('E_BAD_MODEL', `the model's chat_template failed to render the prompt: ${cleanText(errorMessage(e))}`, { cause: e });
}

/**
 * Prompt ids for generation. Our choice (spec §6, §13 item 7): when the rendered text already starts with the BOS
 * token's text (Breeze's template writes "<s>" itself), tokenize with add_special_tokens=false so the prompt has
 * one BOS, the same prompt TRL trains on (spec §7.2 step 4). The notebook's `tokenizer(prompt)` adds a second BOS
 * ([1, 1, ...]); we do not reproduce that. Otherwise BOS is prepended when the tokenizer's add_bos_token says so.
 * EOS is never added to a prompt, even with add_eos_token: it would tell the model the text is over.
 */
export function promptIds(tokenizer: Pick<TextTokenizer, 'encode' | 'bosToken' | 'bosId' | 'addBosToken'>, renderedText: string): number[] {
  const ids = tokenizer.encode(renderedText, { addSpecialTokens: false });
  if (tokenizer.bosToken && renderedText.startsWith(tokenizer.bosToken)) return ids;
  if (tokenizer.addBosToken && tokenizer.bosId !== null) ids.unshift(tokenizer.bosId);
  return ids;
}
