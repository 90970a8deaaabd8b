// Where a JSON text is malformed, in our own words (src-main/services/data/jsonText.ts), and how file values are
// quoted in messages (src-main/services/messageText.ts): the helpers behind the readers' messages and the fuzz fixes
// (docs/fuzzing.md).
import { describe, expect, it } from 'vitest';
import { JsonSyntaxError, parseJson } from '../../src-main/services/data/jsonText';
import { bare, cleanText, printable, quoted } from '../../src-main/services/messageText';

function syntaxError(text: string): JsonSyntaxError {
  try {
    parseJson(text);
  } catch (e) {
    if (e instanceof JsonSyntaxError) return e;
    throw e;
  }
  throw new Error('parsed');
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
    expect(() => JSON.parse(text)).toThrow(SyntaxError);
    expect(syntaxError(text)).toMatchObject({ line, column, element, what, message: `not valid JSON at line ${line}, column ${column}: ${what}` });
  });

  it('parses what JSON.parse accepts, and stops on absurd nesting without overflowing the stack', () => {
    expect(parseJson('{"a": [1, -2.5e3, "\\u00e9", true, null]}')).toEqual({ a: [1, -2500, '\u00e9', true, null] });
    expect(syntaxError('['.repeat(100_000)).what).toBe('values nested deeper than 2000 levels');
    expect(syntaxError('{"a":'.repeat(100_000)).what).toBe('values nested deeper than 2000 levels');
  });

  it('never quotes the text itself', () => {
    const secret = 'root:x:0:0:root:/root:/bin/bash\n';
    expect(syntaxError(secret).message).toBe('not valid JSON at line 1, column 1: unexpected character (expected a value)');
  });
});

describe('quoted / bare / printable', () => {
  it('escapes control, DEL, bidi and line-separator characters and cuts long values', () => {
    expect(quoted('a\u001b[31m\u007f\u202e\u2028')).toBe('"a\\u001b[31m\\u007f\\u202e\\u2028"');
    expect(quoted('x'.repeat(100), 10)).toBe(`"${'x'.repeat(10)}…"`);
    expect(quoted({ a: [1, 2, 3] }, 8)).toBe('{"a":[1,…');
    expect(quoted(7)).toBe('7');
    expect(quoted(undefined)).toBe('undefined');
    expect(bare('model.layers.0\n')).toBe('model.layers.0\\n');
    expect(printable('\u0000')).toBe("'\\u0000'");
    expect(printable("'")).toBe("'\\''");
    expect(cleanText('Unexpected character: \u0001 "x"\n')).toBe('Unexpected character: \\u0001 "x"\\u000a');
    expect(cleanText('z'.repeat(600))).toBe(`${'z'.repeat(500)}…`);
  });
});
