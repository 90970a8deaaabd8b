// How file values are quoted in messages (src-main/services/messageText.ts) and how the JSON reader
// (src-main/services/data/jsonText.ts) meets hostile text: the helpers behind the fuzz fixes (docs/fuzzing.md).
import { describe, expect, it } from 'vitest'
import { parseJson } from '../../src-main/services/data/jsonText'
import { bare, cleanText, printable, quoted } from '../../src-main/services/messageText'

describe('parseJson on hostile text', () => {
  it('stops on absurd nesting without overflowing the stack, and never quotes the text itself', () => {
    expect(() => parseJson('['.repeat(100_000))).toThrow(
      'not valid JSON at line 1, column 2002: values nested deeper than 2000 levels',
    )
    const secret = 'root:x:0:0:root:/root:/bin/bash\n'
    expect(() => parseJson(secret)).toThrow(
      'not valid JSON at line 1, column 1: unexpected character (expected a value)',
    )
    expect(parseJson('{"a": [1, -2.5e3, "\\u00e9", true, null]}')).toEqual({ a: [1, -2500, '\u00e9', true, null] })
  })
})

describe('quoted / bare / printable', () => {
  it('escapes control, DEL, bidi and line-separator characters and cuts long values', () => {
    expect(quoted('a\u001b[31m\u007f\u202e\u2028')).toBe('"a\\u001b[31m\\u007f\\u202e\\u2028"')
    expect(quoted('x'.repeat(100), 10)).toBe(`"${'x'.repeat(10)}…"`)
    expect(quoted({ a: [1, 2, 3] }, 8)).toBe('{"a":[1,…')
    expect(quoted(7)).toBe('7')
    expect(quoted(undefined)).toBe('undefined')
    expect(bare('model.layers.0\n')).toBe('model.layers.0\\n')
    expect(printable('\u0000')).toBe("'\\u0000'")
    expect(printable("'")).toBe("'\\''")
    expect(cleanText('Unexpected character: \u0001 "x"\n')).toBe('Unexpected character: \\u0001 "x"\\u000a')
    expect(cleanText('z'.repeat(600))).toBe(`${'z'.repeat(500)}…`)
  })
})
