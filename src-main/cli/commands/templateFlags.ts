// The chat-template options `generate` and `logps` share with train/run (--chat-date, --enable-thinking), validated
// by the parameter schema and turned into a prompt style (docs/model-families.md).
import type { Command } from 'commander'
import { StudioError } from '../../services/errors'
import type { PromptStyle } from '../../services/session/promptText'
import { trainParamsSchema } from '../../../src-shared/params/trainParams'

export interface TemplateFlags {
  chatDate?: string
  enableThinking?: string
}

export function addTemplateOptions(cmd: Command): Command {
  return cmd
    .option('--chat-date <YYYY-MM-DD>', 'the date templates that print one (Llama 3.1/3.2) get (default: today)')
    .option('--enable-thinking <mode>', "Qwen3 templates: on, off, or default (the template's own)")
}

export function templateStyle(flags: TemplateFlags): Pick<PromptStyle, 'chatDate' | 'enableThinking'> {
  const shape = trainParamsSchema.shape
  const date = shape.chatDate.safeParse(flags.chatDate)
  if (!date.success) throw new StudioError('E_BAD_ARGS', `--chat-date must be YYYY-MM-DD, got '${flags.chatDate}'`)
  const mode = shape.enableThinking.safeParse(flags.enableThinking)
  if (!mode.success)
    throw new StudioError(
      'E_BAD_ARGS',
      `--enable-thinking must be one of default, on, off, got '${flags.enableThinking}'`,
    )
  return {
    ...(date.data ? { chatDate: date.data } : {}),
    ...(mode.data === 'default' ? {} : { enableThinking: mode.data === 'on' }),
  }
}
