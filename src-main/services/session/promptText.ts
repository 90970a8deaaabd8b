// One rule for every command: a plain question is wrapped in the model's chat template with the system message
// (default 回覆請少於20字, as the notebook's data_formulate); a conversational prompt (message list) is rendered as is,
// with the system message put first when it has none.
import type { ChatMessage } from '../tokenizer/chatTemplate'
import { DEFAULT_SYSTEM_MESSAGE, pickChatTemplate, renderMessages, renderPrompt } from '../tokenizer/chatTemplate'
import type { TextTokenizer } from '../tokenizer/textTokenizer'

export interface PromptStyle {
  /** undefined -> the default system message; '' -> none. */
  system?: string
  /** Pass prompts through verbatim (CLI --no-template). */
  noTemplate?: boolean
  /** The day strftime_now renders (YYYY-MM-DD); undefined -> today. Runs record theirs (docs/model-families.md). */
  chatDate?: string
  /** enable_thinking for templates that read it; undefined -> not passed (the template's own default). */
  enableThinking?: boolean
}

/** The prompt style of run parameters: system message, template date and thinking mode. */
export function promptStyleOf(params: {
  systemMessage: string
  chatDate?: string | undefined
  enableThinking: 'default' | 'on' | 'off'
}): PromptStyle {
  return {
    system: params.systemMessage,
    ...(params.chatDate ? { chatDate: params.chatDate } : {}),
    ...(params.enableThinking === 'default' ? {} : { enableThinking: params.enableThinking === 'on' }),
  }
}

export function promptText(tokenizer: TextTokenizer, prompt: string | ChatMessage[], style: PromptStyle): string {
  const variables = { chatDate: style.chatDate, enableThinking: style.enableThinking }
  if (typeof prompt === 'string')
    return renderPrompt(tokenizer, prompt, { system: style.system, noTemplate: style.noTemplate, ...variables }).text
  if (style.noTemplate || pickChatTemplate(tokenizer.chatTemplateSource) === null) {
    const text = prompt.map((m) => m.content).join('\n')
    return style.noTemplate ? text : `${tokenizer.bosToken ?? ''}${text}`
  }
  const system = style.system ?? DEFAULT_SYSTEM_MESSAGE
  const messages = prompt[0]?.role === 'system' || !system ? prompt : [{ role: 'system', content: system }, ...prompt]
  return renderMessages(tokenizer, messages, variables)
}
