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
}

export function promptText(tokenizer: TextTokenizer, prompt: string | ChatMessage[], style: PromptStyle): string {
  if (typeof prompt === 'string') return renderPrompt(tokenizer, prompt, { system: style.system, noTemplate: style.noTemplate }).text
  if (style.noTemplate || pickChatTemplate(tokenizer.chatTemplateSource) === null) {
    const text = prompt.map((m) => m.content).join('\n')
    return style.noTemplate ? text : `${tokenizer.bosToken ?? ''}${text}`
  }
  const system = style.system ?? DEFAULT_SYSTEM_MESSAGE
  const messages = prompt[0]?.role === 'system' || !system ? prompt : [{ role: 'system', content: system }, ...prompt]
  return renderMessages(tokenizer, messages)
}
