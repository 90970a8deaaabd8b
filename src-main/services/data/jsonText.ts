// JSON text for messages that never quote it: parseJson() reports where a file stops being JSON (line, column, and
// for a top-level array the element) without the file's content, which JSON.parse's messages include ("Unexpected
// token 'r', "root:x:0:0"... is not valid JSON"); jsonPathAt() says which array element and field hold an offset
// (invalid UTF-8 is reported that way). Files we read may be anything a path points at.

export class JsonSyntaxError extends Error {
  constructor(
    readonly offset: number,
    readonly line: number,
    readonly column: number,
    /** 1-based element of the top-level array being read, or null. */
    readonly element: number | null,
    readonly what: string,
  ) {
    super(`not valid JSON at line ${line}, column ${column}: ${what}`)
    this.name = 'JsonSyntaxError'
  }
}

/** JSON.parse, but a syntax error is a JsonSyntaxError that quotes nothing of the text. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw locateSyntaxError(text)
  }
}

/** Where `offset` lies in a JSON text: the top-level array element (1-based) and the field path, e.g. "prompt[2].role". */
export function jsonPathAt(text: string, offset: number): { element: number | null; field: string | null } {
  const s = new Scanner(text, offset)
  try {
    s.document()
  } catch {
    /* stopped at the offset, or at a syntax error before it */
  }
  return { element: s.elementAt, field: s.fieldAt }
}

/** 1-based line and column of a character offset. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1
  let start = 0
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++
      start = i + 1
    }
  }
  return { line, column: offset - start + 1 }
}

function locateSyntaxError(text: string): JsonSyntaxError {
  const s = new Scanner(text, Infinity)
  try {
    s.document()
  } catch (e) {
    if (e instanceof Stop) {
      const { line, column } = lineColumn(text, s.pos)
      return new JsonSyntaxError(s.pos, line, column, s.element, e.what)
    }
  }
  // JSON.parse refused what the scanner accepts (should not happen): still say nothing of the content.
  return new JsonSyntaxError(0, 1, 1, null, 'not accepted by the JSON parser')
}

class Stop {
  constructor(readonly what: string) {}
}

/** A strict JSON grammar walk that tracks the top-level array element and the key path, and can stop at an offset. */
class Scanner {
  pos = 0
  /** Current element of a top-level array (1-based), or null. */
  element: number | null = null
  elementAt: number | null = null
  fieldAt: string | null = null
  private readonly path: Array<string | number> = []

  constructor(
    private readonly s: string,
    private readonly stopAt: number,
  ) {}

  document(): void {
    this.ws()
    if (this.s[this.pos] === '[') this.array(true)
    else this.value()
    this.ws()
    if (this.pos < this.s.length) throw new Stop('unexpected text after the end of the JSON value')
  }

  private mark(): void {
    if (this.pos >= this.stopAt && this.elementAt === null && this.fieldAt === null) {
      this.elementAt = this.element
      const parts = this.path.slice(this.element !== null ? 1 : 0)
      this.fieldAt = parts.length
        ? parts.map((p, i) => (typeof p === 'number' ? `[${p + 1}]` : i === 0 ? p : `.${p}`)).join('')
        : null
      throw new Stop('reached')
    }
  }

  private ws(): void {
    while (this.pos < this.s.length && ' \t\n\r'.includes(this.s[this.pos]!)) this.pos++
  }

  private value(): void {
    this.ws()
    // JSON.parse takes any depth; this walk recurses, so it stops with a fault of its own well before the stack does
    // (found by fuzzing, docs/fuzzing.md).
    if (this.path.length > 2000) throw new Stop('values nested deeper than 2000 levels')
    this.mark()
    const c = this.s[this.pos]
    if (c === undefined) throw new Stop('unexpected end of the file')
    if (c === '{') return this.object()
    if (c === '[') return this.array(false)
    if (c === '"') return this.string()
    if (c === '-' || (c >= '0' && c <= '9')) return this.number()
    for (const word of ['true', 'false', 'null']) {
      if (this.s.startsWith(word, this.pos)) {
        this.pos += word.length
        return
      }
    }
    throw new Stop('unexpected character (expected a value)')
  }

  private object(): void {
    this.pos++
    this.ws()
    if (this.s[this.pos] === '}') {
      this.pos++
      return
    }
    for (;;) {
      this.ws()
      if (this.s[this.pos] !== '"')
        throw new Stop(
          this.pos >= this.s.length ? 'unexpected end of the file' : 'expected a field name in double quotes',
        )
      const keyStart = this.pos
      this.string()
      const key = JSON.parse(this.s.slice(keyStart, this.pos)) as string
      this.ws()
      if (this.s[this.pos] !== ':') throw new Stop("expected ':' after a field name")
      this.pos++
      this.path.push(key)
      this.value()
      this.path.pop()
      if (this.next('}')) return
    }
  }

  private array(top: boolean): void {
    this.pos++
    this.ws()
    if (this.s[this.pos] === ']') {
      this.pos++
      return
    }
    for (let i = 0; ; i++) {
      if (top) this.element = i + 1
      this.path.push(i)
      this.value()
      this.path.pop()
      if (this.next(']')) {
        if (top) this.element = null
        return
      }
    }
  }

  /** After a member: true past the closing bracket, false past a comma. */
  private next(close: '}' | ']'): boolean {
    this.ws()
    const c = this.s[this.pos]
    if (c === close || c === ',') {
      this.pos++
      return c === close
    }
    throw new Stop(c === undefined ? 'unexpected end of the file' : `expected ',' or '${close}'`)
  }

  private string(): void {
    this.pos++
    for (;;) {
      if (this.pos >= this.s.length) throw new Stop('a string is not closed')
      this.mark()
      const c = this.s.charCodeAt(this.pos)
      if (c === 34) {
        this.pos++
        return
      }
      if (c < 0x20) throw new Stop('a control character inside a string (write it as an escape like \\n)')
      if (c === 92) {
        const e = this.s[this.pos + 1]
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(this.s.slice(this.pos + 2, this.pos + 6)))
            throw new Stop('expected 4 hex digits after \\u')
          this.pos += 6
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) this.pos += 2
        else throw new Stop('an invalid escape sequence')
        continue
      }
      this.pos++
    }
  }

  private number(): void {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(this.s.slice(this.pos, this.pos + 400))
    if (!m) throw new Stop('an invalid number')
    this.pos += m[0].length
  }
}
