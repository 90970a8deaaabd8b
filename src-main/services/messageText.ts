// How values read from a user's file appear in error messages (docs/fuzzing.md): quoted, with control, bidi and
// line-separator characters escaped (a file must not be able to forge log lines or drive a terminal), and cut
// short (a megabyte id must not become a megabyte message).

/** Characters JSON.stringify leaves raw that still must not reach a message: DEL, C1 controls, line separators,
 * bidirectional overrides. */
const UNSAFE = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g

const hex = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
const escapeUnsafe = (s: string) => s.replace(UNSAFE, hex)

/** Text from elsewhere (a library's error about a file, a template's own raise_exception) for a message: control and
 * other unsafe characters escaped, cut at `max` characters; nothing else changed. */
export function cleanText(text: string, max = 500): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  return escapeUnsafe(cut.replace(/[\u0000-\u001f]/g, hex))
}

/** A value as JSON text for a message, at most about `max` characters of it: "abc", 12, ["q_proj"], null. */
export function quoted(value: unknown, max = 60): string {
  if (typeof value === 'string') {
    const cut = value.length > max ? `${value.slice(0, max)}…` : value
    return escapeUnsafe(JSON.stringify(cut))
  }
  let text: string
  try {
    text = JSON.stringify(value) ?? String(value)
  } catch {
    text = String(value)
  }
  return escapeUnsafe(text.length > max ? `${text.slice(0, max)}…` : text)
}

/** A name from a file (a tensor's, a key's) for a message: escaped and cut like quoted(), without the quotes. */
export function bare(name: string, max = 200): string {
  return quoted(name, max).slice(1, -1)
}

/** One character for a message: 'x', or its escape ('\u0001') when it is not printable. */
export function printable(c: string): string {
  return `'${quoted(c).slice(1, -1).replace(/'/g, "\\'")}'`
}
