// The property every TypeScript fuzz target checks (docs/fuzzing.md): a reader of a user's file either returns a
// valid result or throws a StudioError with a known code whose message names the file (and the row and field when
// it blames one), short, one line; never another kind of exception, never a hang (the runner's watchdog).
import { StudioError } from '../../src-main/services/errors'
import { quoted } from '../../src-main/services/messageText'

// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f-\u009f]/

/** A broken property; the runner records the input that caused it. */
export class PropertyViolation extends Error {
  override readonly name = 'PropertyViolation'
}

export function violation(message: string): never {
  throw new PropertyViolation(message)
}

export function ensure(ok: boolean, message: string): asserts ok {
  if (!ok) violation(message)
}

/** Longest message a refusal may have: values echoed from the file must be cut, not pasted whole. */
export const MAX_MESSAGE_LENGTH = 2048

export interface RefusalRules {
  /** Codes a clean refusal may carry. */
  codes: readonly string[]
  /** Text the message must contain (the file or folder it is about); any one of them. */
  names: readonly string[]
}

const short = (s: string) => (s.length > 300 ? `${s.slice(0, 300)}...` : s)

/** Checks a thrown value against the property; returns normally when it is a clean refusal. */
export function expectCleanRefusal(e: unknown, rules: RefusalRules): void {
  if (e instanceof PropertyViolation) throw e
  if (!(e instanceof StudioError)) {
    const kind = e instanceof Error ? e.constructor.name : typeof e
    violation(`uncaught ${kind}${throwSite(e)}: ${short(e instanceof Error ? e.message : String(e))}`)
  }
  const msg = e.message
  ensure(rules.codes.includes(e.code), `refused with ${e.code} instead of ${rules.codes.join('/')}: ${short(msg)}`)
  ensure(
    rules.names.some((n) => msg.includes(n)),
    `the error names none of ${rules.names.join(', ')}: ${short(msg)}`,
  )
  const row = e.details.row
  if (typeof row === 'number')
    ensure(msg.includes(`row ${row}`), `details blame row ${row} but the message does not: ${short(msg)}`)
  const field = e.details.field
  // A field path made of the file's own keys appears quoted (escaped and cut) as every value from a file does.
  if (typeof field === 'string') {
    ensure(
      msg.includes(field) || msg.includes(quoted(field, 200)),
      `details blame field ${short(quoted(field, 200))} but the message does not: ${short(msg)}`,
    )
  }
  ensure(msg.length <= MAX_MESSAGE_LENGTH, `error message of ${msg.length} characters: ${short(msg)}`)
  // A control character copied from the file (newline, ESC) forges log lines or drives the terminal.
  ensure(!CONTROL_CHARACTER.test(msg), `control character in the error message: ${JSON.stringify(short(msg))}`)
}

/** ' at fn (src-main/...)': the innermost frame of our own code in a foreign error's stack, to tell bugs apart. */
function throwSite(e: unknown): string {
  const frame = (e instanceof Error ? (e.stack ?? '') : '').split('\n').find((l) => l.includes('/src-main/'))
  const m = frame && /at (?:async )?(\S+) \(.*?(src-main\/[^:)]+)/.exec(frame)
  return m
    ? ` at ${m[1]} (${m[2]})`
    : frame
      ? ` at ${frame
          .trim()
          .replace(/^at /, '')
          .replace(/:\d+:\d+\)?$/, '')}`
      : ''
}

/** Runs `read`; a result goes to `check`, a throw to expectCleanRefusal. */
export async function readOrRefuse<T>(
  read: () => Promise<T> | T,
  check: (result: T) => void,
  rules: RefusalRules,
): Promise<void> {
  let result: T
  try {
    result = await read()
  } catch (e) {
    expectCleanRefusal(e, rules)
    return
  }
  check(result)
}

export function isNonEmptyText(v: unknown): v is string {
  return typeof v === 'string' && v.trim() !== ''
}
