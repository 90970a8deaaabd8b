// Where a JSON text is malformed, in our own words (src-main/services/data/jsonText.ts): line, column and top-level
// element for each kind of fault, as the readers' messages report them (docs/fuzzing.md). Hostile depth and the
// quoting helpers are in messageText.test.ts.
import { describe, expect, it } from 'vitest'
import { JsonSyntaxError, parseJson } from '../../src-main/services/data/jsonText'

function syntaxError(text: string): JsonSyntaxError {
  try {
    parseJson(text)
  } catch (e) {
    if (e instanceof JsonSyntaxError) return e
    throw e
  }
  throw new Error('parsed')
}

describe('parseJson', () => {
  it.each([
    ['[1,]', 1, 4, 2, 'unexpected character (expected a value)'],
    ['{"a":1,}', 1, 8, null, 'expected a field name in double quotes'],
    ['[\n {"a": 1},\n {"b": \u0001}\n]', 3, 8, 2, 'unexpected character (expected a value)'],
    ['"abc', 1, 5, null, 'a string is not closed'],
    ['["a\nb"]', 1, 4, 1, 'a control character inside a string (write it as an escape like \\n)'],
    ['{"a" 1}', 1, 6, null, "expected ':' after a field name"],
    ['[1] x', 1, 5, null, 'unexpected text after the end of the JSON value'],
    ['', 1, 1, null, 'unexpected end of the file'],
    ['[1 2]', 1, 4, 1, "expected ',' or ']'"],
    ['"\\x"', 1, 2, null, 'an invalid escape sequence'],
    ['-', 1, 1, null, 'an invalid number'],
  ])('%j: line %d, column %d, element %s: %s', (text, line, column, element, what) => {
    expect(() => JSON.parse(text)).toThrow(SyntaxError)
    expect(syntaxError(text)).toMatchObject({
      line,
      column,
      element,
      what,
      message: `not valid JSON at line ${line}, column ${column}: ${what}`,
    })
  })
})
