// Where a JSON text is malformed, in our own words (src-main/services/jsonSyntax.ts), and how file values are
// quoted in messages (src-main/services/messageText.ts): the two helpers behind the fuzz fixes (docs/fuzzing.md).
import { describe, expect, it } from 'vitest';
import { describeJsonFault, findJsonFault } from '../../src-main/services/jsonSyntax';
import { bare, cleanText, printable, quoted } from '../../src-main/services/messageText';

describe('findJsonFault', () => {
  it.each([
    ['[1,]', 1, 4, 2, "unexpected character ']'"],
    ['{"a":1,}', 1, 8, null, "expected a property name in double quotes, found character '}'"],
    ['[\n {"a": 1},\n {"b": \u0001}\n]', 3, 8, 2, "unexpected character '\\u0001'"],
    ['"abc', 1, 5, null, 'unterminated string'],
    ['["a\nb"]', 1, 4, 1, "control character '\\n' inside a string (write it as an escape)"],
    ['{"a" 1}', 1, 6, null, "expected ':' after a property name, found character '1'"],
    ['[1] x', 1, 5, null, "unexpected character 'x' after the end of the JSON value"],
    ['', 1, 1, null, 'unexpected end of the text'],
    ['[1 2]', 1, 4, 1, "expected ',' or ']' after an array element, found character '2'"],
    ['"\\x"', 1, 2, null, 'invalid escape in a string'],
    ['-', 1, 1, null, 'invalid number'],
  ])('%j: line %d, column %d, element %s: %s', (text, line, column, element, reason) => {
    expect(() => JSON.parse(text)).toThrow(SyntaxError);
    expect(findJsonFault(text)).toMatchObject({ line, column, element, reason });
  });

  it('finds nothing in text JSON.parse accepts, and stops on absurd nesting without overflowing the stack', () => {
    expect(findJsonFault('{"a": [1, -2.5e3, "\\u00e9", true, null]}')).toBeNull();
    expect(findJsonFault('['.repeat(100_000))?.reason).toBe('values nested deeper than 2000 levels');
  });

  it('never quotes the text itself', () => {
    const secret = 'root:x:0:0:root:/root:/bin/bash\n';
    expect(describeJsonFault(secret)).toBe("at line 1, column 1: unexpected character 'r'");
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
