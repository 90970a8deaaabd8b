// What a chat prompt is made of, for both sides: a message, and the notebook's default system message (the
// parameter schema's default; services/tokenizer/chatTemplate.ts renders them with the model's template).

/**
 * The notebook's system message (docs/reference/chat-template.md#the-notebooks-prompt,
 * docs/architecture.md#datasets-and-prompts).
 */
export const DEFAULT_SYSTEM_MESSAGE = '回覆請少於20字'

export interface ChatMessage {
  role: string
  content: string
}
