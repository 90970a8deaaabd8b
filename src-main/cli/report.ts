// Turns any failure into one line on stderr and an exit code: 2 for usage errors, 1 for everything else.
import { CommanderError } from 'commander'
import { errorMessage } from '../services/errors'

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // commander has already printed its message (and help for usage errors).
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0
    return 2
  }
  const code = (e as { code?: unknown })?.code
  const prefix = typeof code === 'string' ? `error [${code}]` : 'error'
  process.stderr.write(`dpo-studio: ${prefix}: ${errorMessage(e).split('\n')[0]}\n`)
  if (process.env.DPO_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n')
  return code === 'E_BAD_ARGS' ? 2 : 1
}
